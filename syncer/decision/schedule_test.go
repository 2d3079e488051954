package decision

import (
	"testing"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
)

// bruteDue is Due's definition walked slot by slot with no cap: the latest
// slot after since, counting in order until the first whose fire time is
// after now.
func bruteDue(s *Schedule, since, now time.Time) (time.Time, bool) {
	var due time.Time
	found := false
	for slot := s.cron.Next(since.UTC()); !slot.IsZero() && !s.FireTime(slot).After(now); slot = s.cron.Next(slot) {
		due, found = slot, true
	}
	return due, found
}

// TestDueAfterLongGap: however long the controller was away, Due gives the
// latest slot, so recording it leaves nothing due and the gap costs one
// renewal, not two.
func TestDueAfterLongGap(t *testing.T) {
	now := pkitest.RandomNow(t)
	const day = 24 * time.Hour
	tests := []struct {
		name   string
		spec   string
		jitter time.Duration
		gap    time.Duration
		// want is the expected slot; zero means "as bruteDue says".
		want time.Time
	}{
		{name: "per minute, 90 days", spec: "* * * * *", gap: 90 * day, want: now.Truncate(time.Minute)},
		{name: "per minute, 3 years", spec: "* * * * *", gap: 3 * 365 * day, want: now.Truncate(time.Minute)},
		{name: "per minute with jitter, 90 days", spec: "* * * * *", jitter: 45 * time.Second, gap: 90 * day},
		{name: "every 7 minutes with jitter, 40 days", spec: "*/7 * * * *", jitter: 20 * time.Minute, gap: 40 * day},
		{name: "daily with jitter, 40 days", spec: "0 3 * * *", jitter: 30 * time.Minute, gap: 40 * day},
		{name: "weekly with jitter longer than a day", spec: "30 2 * * 1", jitter: 36 * time.Hour, gap: 60 * day},
		{name: "yearly, 3 years", spec: "0 0 1 1 *", jitter: time.Hour, gap: 3 * 365 * day},
		{name: "bursts on one hour a day, 40 days", spec: "* 3 * * *", jitter: 10 * time.Minute, gap: 40 * day},
		{name: "hourly, no gap worth a slot", spec: "0 * * * *", gap: time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSchedule(tt.spec, tt.jitter, "uid")
			if err != nil {
				t.Fatal(err)
			}
			since := now.Add(-tt.gap)
			got, ok := s.Due(since, now)
			want, wantOK := tt.want, !tt.want.IsZero()
			if tt.want.IsZero() {
				want, wantOK = bruteDue(s, since, now)
			}
			if got != want || ok != wantOK {
				t.Fatalf("Due = %s, %v; want %s, %v", got, ok, want, wantOK)
			}
			if !ok {
				return
			}
			// Recording the slot leaves nothing due until the next fires.
			if again, due := s.Due(got, now); due {
				t.Errorf("after recording %s, %s is due too", got, again)
			}
			next := s.NextFire(got, now)
			if !next.After(now) {
				t.Errorf("NextFire = %s, not after now %s", next, now)
			}
			if _, due := s.Due(got, next.Add(-time.Nanosecond)); due {
				t.Errorf("a slot is due before the next fire time %s", next)
			}
			if _, due := s.Due(got, next); !due {
				t.Errorf("nothing due at the next fire time %s", next)
			}
		})
	}
}
