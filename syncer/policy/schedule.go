package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

// maxSlotsScanned bounds the walk over missed slots (a per-minute schedule
// after a week of downtime is about 10k slots).
const maxSlotsScanned = 100000

// Schedule is a parsed rotation schedule with a deterministic jitter.
type Schedule struct {
	// Spec is the 5-field cron expression as written.
	Spec string
	// Jitter is the maximum delay added to each slot.
	Jitter time.Duration
	// Seed makes the jitter differ between Certificates but stay the same
	// for one Certificate across restarts (use its UID).
	Seed string

	cron cron.Schedule
}

// ParseSchedule parses a standard 5-field cron expression (UTC).
func ParseSchedule(spec string, jitter time.Duration, seed string) (*Schedule, error) {
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("parse cron expression %q: %w", spec, err)
	}
	if jitter < 0 {
		return nil, fmt.Errorf("jitter %s is negative", jitter)
	}
	return &Schedule{Spec: spec, Jitter: jitter, Seed: seed, cron: s}, nil
}

// FireTime is when slot's rotation fires: the slot plus a jitter derived from
// the seed and the slot, so a restart computes the same time.
func (s *Schedule) FireTime(slot time.Time) time.Time {
	if s.Jitter <= 0 {
		return slot
	}
	h := sha256.Sum256([]byte(s.Seed + "/" + slot.UTC().Format(time.RFC3339)))
	off := binary.BigEndian.Uint64(h[:8]) % uint64(s.Jitter)
	return slot.Add(time.Duration(off))
}

// Due returns the latest slot after since whose fire time is at or before
// now.
func (s *Schedule) Due(since, now time.Time) (time.Time, bool) {
	var due time.Time
	found := false
	slot := s.cron.Next(since.UTC())
	for i := 0; i < maxSlotsScanned && !slot.IsZero() && !s.FireTime(slot).After(now); i++ {
		due, found = slot, true
		slot = s.cron.Next(slot)
	}
	return due, found
}

// NextFire is the fire time of the first slot after since whose fire time is
// after now; zero if the schedule never fires again.
func (s *Schedule) NextFire(since, now time.Time) time.Time {
	slot := s.cron.Next(since.UTC())
	for i := 0; i < maxSlotsScanned && !slot.IsZero(); i++ {
		if f := s.FireTime(slot); f.After(now) {
			return f
		}
		slot = s.cron.Next(slot)
	}
	return time.Time{}
}
