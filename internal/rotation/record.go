package rotation

import (
	"encoding/json"
	"fmt"
	"time"
)

// RecordAnnotation is the annotation on a cluster's intermediate
// Certificate in which rotate-root records the phase it last verified
// there. It informs (`meshtrust status`) and carries the one time the
// rotation cannot read back from Vault or the cluster: when the cluster
// was first seen signing under the new root. It never decides a phase:
// Observe does, from what Vault and the cluster hold.
const RecordAnnotation = "meshtrust.io/root-rotation"

// Record is RecordAnnotation's value.
type Record struct {
	// From and To are the root issuers' names, FromSHA256 and ToSHA256
	// their fingerprints.
	From       string `json:"from"`
	FromSHA256 string `json:"fromSHA256"`
	To         string `json:"to"`
	ToSHA256   string `json:"toSHA256"`
	// Phase is the cluster's phase as last verified; PhaseName its name.
	Phase     Phase  `json:"phase"`
	PhaseName string `json:"phaseName"`
	// RolledBack is true once a rollback returned the cluster to From.
	RolledBack bool `json:"rolledBack,omitempty"`
	// At is when Phase was verified.
	At time.Time `json:"at"`
	// MovedAt is when the cluster was first seen with its intermediate
	// signed by To, as istiod is given it; the wait before dropping From
	// starts at the latest MovedAt of the fleet.
	MovedAt *time.Time `json:"movedAt,omitempty"`
}

// Label is how status shows the record.
func (r *Record) Label() string {
	if r == nil {
		return "-"
	}
	if r.RolledBack {
		return "rolled back to " + r.From
	}
	return r.Phase.Label()
}

// ParseRecord reads the annotation's value; nil for an empty one.
func ParseRecord(v string) (*Record, error) {
	if v == "" {
		return nil, nil
	}
	var r Record
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", RecordAnnotation, err)
	}
	return &r, nil
}

func (r Record) encode() string {
	b, _ := json.Marshal(r)
	return string(b)
}

// same reports whether the record is about the same rotation.
func (r *Record) same(roots Roots) bool {
	return r != nil && r.From == roots.FromName && r.To == roots.ToName && r.ToSHA256 == roots.To
}

// next is the record to write for a cluster seen at phase p at now, or nil
// when the existing one already says so.
func nextRecord(old *Record, roots Roots, p Phase, rolledBack bool, now time.Time) *Record {
	r := Record{From: roots.FromName, FromSHA256: roots.From, To: roots.ToName, ToSHA256: roots.To,
		Phase: p, PhaseName: p.String(), RolledBack: rolledBack, At: now.UTC().Truncate(time.Second)}
	if old.same(roots) {
		if r.FromSHA256 == "" {
			r.FromSHA256 = old.FromSHA256
		}
		if old.Phase == p && old.RolledBack == rolledBack && (p < IntermediatesMoved || old.MovedAt != nil) {
			return nil
		}
		if !rolledBack {
			r.MovedAt = old.MovedAt
		}
	}
	if p >= IntermediatesMoved && r.MovedAt == nil {
		r.MovedAt = &r.At
	}
	return &r
}
