package decision

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/robfig/cron/v3"
)

// maxSlotsScanned bounds any single walk over slots. Due and NextFire start
// their walks close to now, so a long downtime never makes them walk from
// the last recorded slot.
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
// now, counting slots in order until the first that has not fired yet
// (jitter can make a later slot fire first).
func (s *Schedule) Due(since, now time.Time) (time.Time, bool) {
	since, now = since.UTC(), now.UTC()
	// A slot at or before now-Jitter has certainly fired, so only the slots
	// after that need their fire times checked. Walking from since instead
	// would, after a long gap, stop at the scan cap on a stale slot, and the
	// next reconcile would find another one due: two renewals.
	cut := now.Add(-s.Jitter)
	if cut.Before(since) {
		cut = since
	}
	var due time.Time
	found := false
	slot := s.cron.Next(cut)
	for i := 0; i < maxSlotsScanned && !slot.IsZero() && !s.FireTime(slot).After(now); i++ {
		due, found = slot, true
		slot = s.cron.Next(slot)
	}
	if found || !cut.After(since) {
		return due, found
	}
	return s.lastSlot(since, cut)
}

// lastSlot returns the latest slot in (since, until]. Cron can only step
// forwards, so it looks back over windows that double until one holds a
// slot: the first such window holds few slots even after years of gap.
func (s *Schedule) lastSlot(since, until time.Time) (time.Time, bool) {
	for w := time.Minute; ; w *= 2 {
		start := until.Add(-w)
		// The second test stops w before it overflows.
		if !start.After(since) || w > math.MaxInt64/4 {
			start = since
		}
		var last time.Time
		found := false
		slot := s.cron.Next(start)
		for i := 0; i < maxSlotsScanned && !slot.IsZero() && !slot.After(until); i++ {
			last, found = slot, true
			slot = s.cron.Next(slot)
		}
		if found || start.Equal(since) {
			return last, found
		}
	}
}

// NextFire is the fire time of the first slot after since whose fire time is
// after now; zero if the schedule never fires again.
func (s *Schedule) NextFire(since, now time.Time) time.Time {
	since, now = since.UTC(), now.UTC()
	// Slots at or before now-Jitter have fired already; skip them unwalked.
	if cut := now.Add(-s.Jitter); cut.After(since) {
		since = cut
	}
	slot := s.cron.Next(since)
	for i := 0; i < maxSlotsScanned && !slot.IsZero(); i++ {
		if f := s.FireTime(slot); f.After(now) {
			return f
		}
		slot = s.cron.Next(slot)
	}
	return time.Time{}
}
