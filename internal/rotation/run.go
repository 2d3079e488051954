package rotation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshtrust/meshtrust/internal/vaultadmin"
)

// Options configure a rotation.
type Options struct {
	// Mount is the PKI mount.
	Mount string
	// From is the root issuer the fleet leaves (A), To the one it moves to
	// (B), by issuer name.
	From, To string
	// NewRoot shapes B when the rotation generates it (its common name, key
	// type and bits, TTL); Mount, IssuerName and SetDefault are set here.
	NewRoot vaultadmin.BootstrapOptions
	// Wait is how long A stays in every bundle after the last cluster
	// moved to B; at least WorkloadCertTTL, so that every workload
	// certificate signed under A has expired before A is dropped.
	Wait time.Duration
	// WorkloadCertTTL is the lifetime of the workload certificates istiod
	// issues (its DEFAULT_WORKLOAD_CERT_TTL, or the longest a proxy asks).
	WorkloadCertTTL time.Duration
	// RootsCacheTTL is the issuer's --issuer-roots-cache-ttl: a renewal
	// within it of a root change in Vault may carry the old list of roots,
	// and is repeated once it has passed.
	RootsCacheTTL time.Duration
	// StepTimeout bounds each cluster's step (a renewal, the syncer's
	// write, istiod's reload); a cluster that takes longer is named as
	// lagging and the rotation stops there.
	StepTimeout time.Duration
	// Poll is the interval between reads while waiting.
	Poll time.Duration
	// Rollback returns the fleet to From instead.
	Rollback bool
	// DeleteKey deletes the key of the root the rotation deletes (From, or
	// To on rollback) with its issuer.
	DeleteKey bool
	// Names locate enrol's objects in every cluster.
	Names Names
	// Now is the clock.
	Now func() time.Time
	// Progress receives a line for each thing done or waited for.
	Progress func(Event)
	// Hook, when set, is called after each step and in the middle of
	// each step that writes more than once; tests kill the process there.
	Hook func(Point)
}

// Validate checks the options before anything is read.
func (o Options) Validate() error {
	switch {
	case o.From == "" || o.To == "":
		return errors.New("--from and --to name the old and the new root issuer")
	case o.From == o.To:
		return fmt.Errorf("--from and --to are both %q", o.From)
	case o.From == "default" || o.To == "default":
		return errors.New(`name the roots themselves, not "default"`)
	case !o.Rollback && o.Wait < o.WorkloadCertTTL:
		return fmt.Errorf("invalid --old-root-wait %s: must be at least --workload-cert-ttl %s, so that no workload still holds a certificate under %s when it is dropped",
			vaultadmin.Dur(o.Wait), vaultadmin.Dur(o.WorkloadCertTTL), o.From)
	case o.StepTimeout <= 0 || o.Poll <= 0:
		return errors.New("step timeout and poll interval must be positive")
	}
	return nil
}

// Event is one progress line.
type Event struct {
	// Phase is the phase being worked towards.
	Phase Phase
	// Rollback is true on a rollback.
	Rollback bool
	// Cluster is the cluster concerned, "" for Vault.
	Cluster string
	// Message says what was done or is awaited.
	Message string
	// Until is when a wait ends; zero when it ends on an observation.
	Until time.Time
}

// Point is where a Hook is called.
type Point struct {
	// Step counts the steps of this run, from 1.
	Step int
	Kind Kind
	// Cluster is the step's cluster, "" for Vault.
	Cluster string
	// Mid is true inside the step, after its first write.
	Mid bool
}

// BlockedError is a rotation that stopped before the next phase because a
// cluster is unreachable or lags; nothing further was changed.
type BlockedError struct {
	// Phase is where the fleet stands.
	Phase Phase
	// Clusters names the clusters in the way.
	Clusters []string
	// Reasons says why, one per cluster.
	Reasons []string
}

func (e *BlockedError) Error() string {
	return fmt.Sprintf("stopped at phase %s, not moving on: %s", e.Phase.Label(), strings.Join(e.Reasons, "; "))
}

// Is makes errors.Is(err, ErrBlocked) true for a BlockedError.
func (e *BlockedError) Is(target error) bool { return target == ErrBlocked }

// ErrBlocked matches every BlockedError.
var ErrBlocked = errors.New("rotation blocked")

// Fleet is a rotation over a set of clusters.
type Fleet struct {
	o           Options
	vault       *vaultadmin.Client
	members     []*member
	policyNames []string
	step        int
}

// New builds the fleet's clients; it reads nothing yet.
func New(o Options, vault *vaultadmin.Client, clusters []Cluster) (*Fleet, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Progress == nil {
		o.Progress = func(Event) {}
	}
	if o.Names == (Names{}) {
		o.Names = DefaultNames()
	}
	if len(clusters) == 0 {
		return nil, errors.New("no cluster to rotate: pass --context for each enrolled cluster, or --all-enrolled")
	}
	f := &Fleet{o: o, vault: vault}
	for _, c := range clusters {
		m, err := newMember(c)
		if err != nil {
			return nil, err
		}
		f.members = append(f.members, m)
	}
	return f, nil
}

// Snapshot is one observation of Vault and the fleet.
type Snapshot struct {
	Roots    Roots
	Vault    VaultView
	Clusters []ClusterView
	State    State
	// WaitEnds is when the wait before dropping From ends; zero until
	// every cluster has moved.
	WaitEnds time.Time

	vault *vaultState
}

// Observe reads Vault and every cluster.
func (f *Fleet) Observe(ctx context.Context) (*Snapshot, error) {
	v, err := f.observeVault(ctx)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{Vault: v.view, vault: v}
	for _, m := range f.members {
		s.Clusters = append(s.Clusters, f.observeCluster(ctx, m, v))
	}
	s.Roots = f.roots(v, s.Clusters)
	if s.State, err = Derive(s.Roots, s.Vault, s.Clusters); err != nil && !f.o.Rollback {
		return nil, err
	}
	s.WaitEnds = f.waitEnds(s.Clusters)
	return s, nil
}

// waitEnds is Wait after the latest MovedAt of the fleet; zero while a
// cluster has none.
func (f *Fleet) waitEnds(cs []ClusterView) time.Time {
	var last time.Time
	for _, c := range cs {
		if c.Record == nil || c.Record.MovedAt == nil || c.Record.RolledBack || c.Record.To != f.o.To {
			return time.Time{}
		}
		if c.Record.MovedAt.After(last) {
			last = *c.Record.MovedAt
		}
	}
	return last.Add(f.o.Wait)
}

// blocked is the error for clusters that could not be read. Its phase is
// the one the clusters that could be read show.
func (s *Snapshot) blocked() error {
	e := &BlockedError{}
	var reachable []ClusterView
	for _, c := range s.Clusters {
		if c.Err != nil {
			e.Clusters = append(e.Clusters, c.Context)
			e.Reasons = append(e.Reasons, fmt.Sprintf("cluster %s cannot be read: %v", c.Context, c.Err))
		} else {
			reachable = append(reachable, c)
		}
	}
	if len(e.Clusters) == 0 {
		return nil
	}
	if st, err := Derive(s.Roots, s.Vault, reachable); err == nil && len(reachable) > 0 {
		e.Phase = st.Phase
	}
	return e
}

// Result is where a run left the fleet.
type Result struct {
	// Phase is the fleet's phase (NotStarted after a rollback).
	Phase Phase
	// Steps counts the steps this run took.
	Steps int
	// Snapshot is the last observation.
	Snapshot *Snapshot
}

// Run takes the fleet to the end (or back to From), one verified step at a
// time, and returns when it is there. It stops with a *BlockedError as
// soon as a cluster cannot be read or does not reach a step's state in
// time, before anything of a later phase is done.
func (f *Fleet) Run(ctx context.Context) (*Result, error) {
	for {
		s, err := f.Observe(ctx)
		if err != nil {
			return nil, err
		}
		if err := s.blocked(); err != nil {
			return &Result{Phase: s.State.Phase, Steps: f.step, Snapshot: s}, err
		}
		if err := f.record(ctx, s); err != nil {
			return nil, err
		}
		var st Step
		if f.o.Rollback {
			st, err = NextBack(s.Roots, s.Vault, s.Clusters)
		} else {
			st, err = Next(s.Roots, s.Vault, s.Clusters, s.WaitEnds, f.o.Now())
		}
		if err != nil {
			return nil, err
		}
		if st.Kind == StepDone {
			f.say(st, -1, "done: %s", f.doneLine(s))
			return &Result{Phase: s.State.Phase, Steps: f.step, Snapshot: s}, nil
		}
		f.step++
		if err := f.do(ctx, s, st); err != nil {
			return &Result{Phase: s.State.Phase, Steps: f.step, Snapshot: s}, err
		}
		if st.Cluster >= 0 {
			if err := f.recordCluster(ctx, s.Roots, st.Cluster); err != nil {
				return nil, err
			}
		}
		f.hook(st, false)
	}
}

func (f *Fleet) doneLine(s *Snapshot) string {
	if f.o.Rollback {
		line := fmt.Sprintf("every cluster signs under %s again and no ca.crt carries %s", f.o.From, f.o.To)
		for _, c := range s.Clusters {
			if slices.Contains(c.CACertsRoots, s.Roots.To) && !c.GraceEnds.IsZero() {
				line += fmt.Sprintf("; %s keeps %s in root-cert.pem until %s (meshtrust.io/root-grace)", c.Context, f.o.To, c.GraceEnds.UTC().Format(time.RFC3339))
			}
		}
		return line
	}
	return fmt.Sprintf("every cluster signs under %s and trusts only it; %s is retired", f.o.To, f.o.From)
}

// record writes each cluster's record where it differs from what the
// cluster shows.
func (f *Fleet) record(ctx context.Context, s *Snapshot) error {
	for i, c := range s.Clusters {
		p := s.State.Clusters[i]
		back := f.o.Rollback && c.rolledBack(s.Roots)
		if f.o.Rollback && !back && c.Record == nil {
			continue
		}
		if c.Record == nil && p == NotStarted && !back {
			continue
		}
		r := nextRecord(c.Record, s.Roots, p, back, f.o.Now())
		if r == nil {
			continue
		}
		if err := f.members[i].writeRecord(ctx, f.o.Names, *r); err != nil {
			return fmt.Errorf("cluster %s: %w", c.Context, err)
		}
		s.Clusters[i].Record = r
	}
	s.WaitEnds = f.waitEnds(s.Clusters)
	return nil
}

// recordCluster records the phase one cluster shows right after its step
// was verified, so that status shows it even if the run stops now.
func (f *Fleet) recordCluster(ctx context.Context, r Roots, i int) error {
	v, err := f.cluster(ctx, i)
	if err != nil {
		return err
	}
	back := f.o.Rollback && v.rolledBack(r)
	p := v.Phase(r)
	if f.o.Rollback && !back {
		return nil
	}
	if rec := nextRecord(v.Record, r, p, back, f.o.Now()); rec != nil {
		return f.members[i].writeRecord(ctx, f.o.Names, *rec)
	}
	return nil
}

func (f *Fleet) hook(st Step, mid bool) {
	if f.o.Hook == nil {
		return
	}
	p := Point{Step: f.step, Kind: st.Kind, Mid: mid}
	if st.Cluster >= 0 {
		p.Cluster = f.members[st.Cluster].Context
	}
	f.o.Hook(p)
}

func (f *Fleet) say(st Step, cluster int, format string, args ...any) {
	ev := Event{Phase: st.Phase, Rollback: f.o.Rollback, Message: fmt.Sprintf(format, args...)}
	if cluster >= 0 {
		ev.Cluster = f.members[cluster].Context
	}
	f.o.Progress(ev)
}
