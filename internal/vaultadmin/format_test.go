package vaultadmin

import (
	"testing"
	"time"
)

func TestDur(t *testing.T) {
	for d, want := range map[time.Duration]string{2160 * time.Hour: "2160h", 90 * time.Minute: "1h30m", 20 * time.Minute: "20m", 1500 * time.Millisecond: "1.5s"} {
		if got := Dur(d); got != want {
			t.Errorf("Dur(%v) = %q, want %q", d, got, want)
		}
	}
}
