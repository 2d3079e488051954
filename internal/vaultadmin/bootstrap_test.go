package vaultadmin

import (
	"strings"
	"testing"
	"time"
)

func TestImportedIssuer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		data  map[string]any
		id    string
		isNew bool
		err   string
	}{
		{name: "new", data: map[string]any{"imported_issuers": []any{"a"}, "existing_issuers": nil, "mapping": map[string]any{"a": "k"}}, id: "a", isNew: true},
		{name: "already there", data: map[string]any{"imported_issuers": nil, "existing_issuers": []any{"a"}, "mapping": map[string]any{"a": "k"}}, id: "a"},
		{name: "old Vault, already there", data: map[string]any{"imported_issuers": nil, "mapping": map[string]any{"a": "k"}}, id: "a"},
		{name: "two issuers", data: map[string]any{"imported_issuers": []any{"a"}, "existing_issuers": []any{"b"}}, err: "found 2"},
		{name: "nothing", data: map[string]any{}, err: "found 0"},
		{name: "no data", data: nil, err: "found 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, isNew, err := importedIssuer(tc.data)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("got %q %v %v, want an error about %q", id, isNew, err, tc.err)
				}
				return
			}
			if err != nil || id != tc.id || isNew != tc.isNew {
				t.Errorf("got %q %v %v, want %q %v", id, isNew, err, tc.id, tc.isNew)
			}
		})
	}
}

func TestSecretIDUnexpired(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		data map[string]any
		want bool
	}{
		{name: "never expires", data: map[string]any{"expiration_time": "0001-01-01T00:00:00Z"}, want: true},
		{name: "expires later", data: map[string]any{"expiration_time": "2026-03-01T12:00:01.5Z"}, want: true},
		{name: "expired", data: map[string]any{"expiration_time": "2026-03-01T11:59:59.123456789Z"}},
		{name: "expires now", data: map[string]any{"expiration_time": "2026-03-01T12:00:00Z"}},
		{name: "unreadable expiry", data: map[string]any{"expiration_time": "soon"}},
		{name: "no expiry field", data: map[string]any{}},
		{name: "no data"},
	} {
		if got := secretIDUnexpired(tc.data, now); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
