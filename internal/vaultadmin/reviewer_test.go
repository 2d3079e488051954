package vaultadmin

import (
	"encoding/base64"
	"testing"
	"time"
)

func TestJWTExpiry(t *testing.T) {
	seg := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		name, jwt string
		want      time.Time
	}{
		{"exp", seg(`{"alg":"RS256"}`) + "." + seg(`{"exp":1893456000,"sub":"system:serviceaccount:kube-system:r"}`) + ".sig", time.Unix(1893456000, 0).UTC()},
		{"no exp", seg(`{}`) + "." + seg(`{"sub":"x"}`) + ".sig", time.Time{}},
		{"not a JWT", "secret-token", time.Time{}},
		{"bad payload", "a.%%%.c", time.Time{}},
		{"string exp", seg(`{}`) + "." + seg(`{"exp":"soon"}`) + ".sig", time.Time{}},
	} {
		if got := JWTExpiry(tc.jwt); !got.Equal(tc.want) {
			t.Errorf("%s: JWTExpiry = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestReviewerExpiry(t *testing.T) {
	ann := map[string]string{"meshtrust.io/vault-reviewer-token-expires": "2030-01-02T03:04:05Z", "meshtrust.io/vault-reviewer-token-mount": "kubernetes-east"}
	if got, ok := reviewerExpiry(ann, "kubernetes-east"); !ok || got.Year() != 2030 {
		t.Errorf("reviewerExpiry = %v %v", got, ok)
	}
	if _, ok := reviewerExpiry(ann, "kubernetes-west"); ok {
		t.Error("the expiry recorded for another mount was taken")
	}
}
