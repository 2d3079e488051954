package rotation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/meshtrust/meshtrust/internal/crlexchange"
	"github.com/meshtrust/meshtrust/internal/kube"
	"github.com/meshtrust/meshtrust/internal/vaultadmin"
)

// do carries out one step and waits until what it changed shows.
func (f *Fleet) do(ctx context.Context, s *Snapshot, st Step) error {
	r := s.Roots
	switch st.Kind {
	case StepTrust, StepMove, StepMoveBack, StepDrop:
		// Each renews a cluster's intermediate.
		if err := f.peersTakeCRLs(ctx, s, st); err != nil {
			return err
		}
	}
	switch st.Kind {
	case StepAddRoot:
		return f.addRoot(ctx, st)
	case StepTrust:
		return f.trust(ctx, s, st)
	case StepMove:
		return f.move(ctx, s, st, RefTo)
	case StepMoveBack:
		return f.move(ctx, s, st, RefFrom)
	case StepDefault:
		target, name := s.vault.to, f.o.To
		if f.o.Rollback {
			target, name = s.vault.from, f.o.From
		}
		f.say(st, -1, "making %s the default issuer of %s/", name, f.o.Mount)
		return vaultadmin.SetDefaultIssuer(ctx, f.vault, f.o.Mount, target.IssuerID)
	case StepWait:
		return f.wait(ctx, st, s)
	case StepDeleteRoot:
		name := f.o.From
		if f.o.Rollback {
			name = f.o.To
		}
		return f.deleteRoot(ctx, st, name)
	case StepDrop:
		gone, name := r.From, f.o.From
		if f.o.Rollback {
			gone, name = r.To, f.o.To
		}
		return f.renewUntil(ctx, st, fmt.Sprintf("ca.crt without %s", name), func(v ClusterView) bool {
			return !slices.Contains(v.SourceRoots, gone) && v.ChainRoot != gone && (f.o.Rollback || v.trusts(r.To))
		})
	case StepGrace:
		return f.grace(ctx, s, st)
	}
	return fmt.Errorf("unknown step %q", st.Kind)
}

// addRoot generates B inside Vault through bootstrap's plan, so that
// whatever bootstrap checks or records for a root holds for B too. The
// mount's other settings are left as they are.
func (f *Fleet) addRoot(ctx context.Context, st Step) error {
	o := f.o.NewRoot
	o.Mount, o.IssuerName, o.SetDefault = f.o.Mount, f.o.To, false
	max, err := vaultadmin.MountMaxTTL(ctx, f.vault, f.o.Mount)
	if err != nil {
		return err
	}
	o.MaxIntermediateTTL = max
	// The mount's CRL settings stay as bootstrap made them.
	if o.CRLExpiry, o.CRLRebuildGrace, err = vaultadmin.MountCRLTimes(ctx, f.vault, f.o.Mount); err != nil {
		return err
	}
	o.DefaultURLBase = f.vault.Addr
	plan, err := vaultadmin.PlanBootstrap(ctx, f.vault, o)
	if err != nil {
		return err
	}
	res, err := plan.Apply(ctx)
	if err != nil {
		return err
	}
	f.say(st, -1, "root %s (%s, SHA-256 %s) added to %s/ inside Vault, not the default", res.Root.IssuerName, res.Root.IssuerID, res.Root.FingerprintSHA256, f.o.Mount)
	return nil
}

// trust renews one cluster until its ca.crt carries both roots, then
// waits for the syncer to write them into root-cert.pem and for istiod to
// publish them.
func (f *Fleet) trust(ctx context.Context, s *Snapshot, st Step) error {
	r := s.Roots
	return f.renewUntil(ctx, st, "root-cert.pem and istio-ca-root-cert with both roots", func(v ClusterView) bool {
		return slices.Contains(v.SourceRoots, r.From) && slices.Contains(v.SourceRoots, r.To) && v.trusts(r.From) && v.trusts(r.To)
	})
}

// move points one cluster's policy and VaultClusterIssuer at the target
// root and renews its intermediate, then waits for istiod to be given the
// new intermediate while both roots stay trusted. The policy goes first:
// until the issuerRef follows, the cluster's renewals fail and its cacerts
// stays as it is, so a stop in between breaks nothing.
func (f *Fleet) move(ctx context.Context, s *Snapshot, st Step, to Ref) error {
	m, v, r := f.members[st.Cluster], s.Clusters[st.Cluster], s.Roots
	name, fp := f.o.To, r.To
	if to == RefFrom {
		name, fp = f.o.From, r.From
	}
	wrote := false
	if v.PolicyRef != to {
		if err := vaultadmin.WritePolicy(ctx, f.vault, v.Policy, m.policyFor(v.Policy, name).HCL()); err != nil {
			return err
		}
		f.say(st, st.Cluster, "Vault policy %s now lets the cluster sign only under %s", v.Policy, name)
		f.hook(st, true)
		wrote = true
	}
	if v.IssuerRef != to {
		if err := m.setIssuerRef(ctx, v.IssuerName, name); err != nil {
			return err
		}
		f.say(st, st.Cluster, "VaultClusterIssuer %s spec.pki.issuerRef = %s", v.IssuerName, name)
		if !wrote {
			f.hook(st, true)
		}
	}
	return f.renewUntil(ctx, st, "cert-chain.pem signed by "+name+", both roots trusted", func(v ClusterView) bool {
		return v.SourceSigner == fp && v.ChainRoot == fp && v.trusts(r.From) && (to == RefFrom || v.trusts(r.To))
	})
}

// deleteRoot deletes a root issuer through retire-root's plan, which
// refuses while it is the default or a policy still signs under it.
func (f *Fleet) deleteRoot(ctx context.Context, st Step, name string) error {
	plan, err := vaultadmin.PlanRetire(ctx, f.vault, vaultadmin.RetireOptions{Mount: f.o.Mount, IssuerName: name, DeleteKey: f.o.DeleteKey})
	if err != nil {
		return err
	}
	res, err := plan.Apply(ctx)
	if err != nil {
		return err
	}
	key := "its key kept, unused"
	if res.KeyDeleted {
		key = "its key deleted"
	}
	f.say(st, -1, "root %s deleted from %s/ (%s); each cluster is renewed next, so that ca.crt drops it", name, f.o.Mount, key)
	return nil
}

// wait sleeps until the wait before dropping From is over.
func (f *Fleet) wait(ctx context.Context, st Step, s *Snapshot) error {
	if st.Until.IsZero() {
		return errors.New("the time every cluster moved is not recorded yet")
	}
	f.o.Progress(Event{Phase: st.Phase, Message: fmt.Sprintf("waiting %s after the last cluster moved to %s, so that every workload certificate under %s has expired (run again to continue if stopped)",
		vaultadmin.Dur(f.o.Wait), f.o.To, f.o.From), Until: st.Until})
	return sleepUntil(ctx, f.o.Now, st.Until, f.o.Poll)
}

// grace waits for the syncer to drop From from one cluster's
// root-cert.pem at the end of its root grace, and istiod to publish that.
func (f *Fleet) grace(ctx context.Context, s *Snapshot, st Step) error {
	v, r := s.Clusters[st.Cluster], s.Roots
	timeout := f.o.StepTimeout
	if !v.GraceEnds.IsZero() {
		f.o.Progress(Event{Phase: st.Phase, Cluster: v.Context, Until: v.GraceEnds,
			Message: fmt.Sprintf("waiting for the syncer to drop %s from root-cert.pem at the end of meshtrust.io/root-grace", f.o.From)})
		timeout += max(0, v.GraceEnds.Sub(f.o.Now()))
	}
	return f.waitFor(ctx, st, timeout, "root-cert.pem and istio-ca-root-cert without "+f.o.From, func(v ClusterView) bool {
		return v.distrusts(r.From) && v.trusts(r.To)
	})
}

// crlRefreshWait bounds how long peersTakeCRLs waits for a cluster's
// issuer to refresh its CRLs when asked to: a running one does at once.
const crlRefreshWait = 30 * time.Second

// peersTakeCRLs checks, before a step renews the intermediate of the
// step's cluster, that every other cluster taking part in the CRL exchange
// still refreshes its CRLs: it asks each one's VaultClusterIssuers to
// refresh now (crlexchange.RefreshAnnotation, as vault revoke does) and
// waits for the exchange ConfigMap's status to answer that request. A
// cluster carries a peer's new intermediate's CRL only once its own issuer
// has read it from Vault, and a proxy checking CRLs refuses a chain with a
// CA it has no CRL of; so with a cluster's controllers down, renewing any
// other cluster would cut that pair's traffic. The rotation then stops
// before the step, naming the cluster, having changed nothing.
func (f *Fleet) peersTakeCRLs(ctx context.Context, s *Snapshot, st Step) error {
	value := "rotate-root " + f.o.Now().UTC().Format(time.RFC3339Nano)
	var asked []int
	for i, m := range f.members {
		if i == st.Cluster {
			continue
		}
		if _, ok, err := m.crlStatus(ctx, s.Clusters[i].IssuerName); err != nil || !ok {
			if err != nil {
				return f.peerLags(st, i, err.Error())
			}
			continue // no CRLs there: its proxies check none
		}
		if _, err := kube.RequestCRLRefresh(ctx, m.crc, crlexchange.RefreshAnnotation, value); err != nil {
			return f.peerLags(st, i, err.Error())
		}
		asked = append(asked, i)
	}
	wait := min(crlRefreshWait, f.o.StepTimeout)
	deadline := f.o.Now().Add(wait)
	for _, i := range asked {
		var last crlexchange.Status
		err := f.poll(ctx, deadline, func() error {
			s, _, err := f.members[i].crlStatus(ctx, s.Clusters[i].IssuerName)
			if err != nil {
				return err
			}
			if last = s; s.Answered != value {
				return notYet("asked to refresh its CRLs")
			}
			return nil
		})
		if err != nil {
			return f.peerLags(st, i, fmt.Sprintf("its issuer did not refresh its CRLs within %s of being asked (last refresh %s): %v",
				vaultadmin.Dur(wait), last.RefreshedAt.UTC().Format(time.RFC3339), err))
		}
	}
	return nil
}

// peerLags stops the rotation before st because cluster i would not take
// the CRL of the intermediate st renews.
func (f *Fleet) peerLags(st Step, i int, why string) error {
	name, renewed := f.members[i].Context, f.members[st.Cluster].Context
	return &BlockedError{Phase: max(NotStarted, st.Phase-1), Clusters: []string{name},
		Reasons: []string{fmt.Sprintf("cluster %s would not carry the CRL of %s's next intermediate, so its proxies would refuse %s's workloads: %s; start its meshtrust controllers and run again",
			name, renewed, renewed, why)}}
}

// renewUntil renews the step's cluster until done holds for it. A renewal
// that shows an outdated list of Vault's roots (the issuer caches it for
// RootsCacheTTL) is repeated once the cache has expired. One the syncer
// holds back until its CRL has reached the other clusters (CRLs on, other
// clusters in the exchange: --syncer-crl-propagation-delay) is waited for
// instead: renewing again would only start that wait over.
func (f *Fleet) renewUntil(ctx context.Context, st Step, want string, done func(ClusterView) bool) error {
	m := f.members[st.Cluster]
	deadline := f.o.Now().Add(f.o.StepTimeout)
	for attempt := 1; ; attempt++ {
		v, err := f.cluster(ctx, st.Cluster)
		if err != nil {
			return err
		}
		if done(v) {
			return nil
		}
		rev, err := m.renew(ctx, f.o.Names)
		if err != nil {
			return f.lagging(st, err)
		}
		f.say(st, st.Cluster, "renewing the intermediate (revision %d, attempt %d), waiting up to %s for %s", rev, attempt, vaultadmin.Dur(f.o.StepTimeout), want)
		f.hook(st, true)
		if err := f.poll(ctx, deadline, func() error { return m.issued(ctx, f.o.Names, rev) }); err != nil {
			return f.lagging(st, err)
		}
		// The syncer and istiod follow the issuance within seconds (once
		// the syncer lets the intermediate in); a renewal that carried an
		// outdated root list never gets there.
		window := max(f.o.RootsCacheTTL, 10*f.o.Poll)
		settle := f.o.Now().Add(window)
		show := f.shows(ctx, st, want, done)
		err = f.poll(ctx, deadline, func() error {
			err := show()
			if err == nil || !isPending(err) || f.o.Now().Before(settle) {
				return err
			}
			if held, herr := m.heldForCRL(ctx, f.o.Names); herr == nil && held != "" {
				settle = f.o.Now().Add(window)
				return notYet("%v; the syncer holds the new intermediate: %s", err, held)
			}
			return &renewAgain{err}
		})
		if err == nil {
			f.say(st, st.Cluster, "verified: %s", want)
			return nil
		}
		// Renewed again: a renewal that did not get there in time, or a
		// read that failed, within the deadline.
		var again *renewAgain
		if errors.As(err, &again) {
			err = again.err
		} else if isPending(err) {
			return f.lagging(st, err) // the deadline passed while waiting
		}
		if !f.o.Now().Before(deadline) {
			return f.lagging(st, err)
		}
	}
}

// renewAgain ends a wait for a renewal that did not get there in time: the
// cluster is renewed once more.
type renewAgain struct{ err error }

func (r *renewAgain) Error() string { return r.err.Error() }
func (r *renewAgain) Unwrap() error { return r.err }

// waitFor polls the step's cluster until done holds, for up to timeout.
func (f *Fleet) waitFor(ctx context.Context, st Step, timeout time.Duration, want string, done func(ClusterView) bool) error {
	if err := f.poll(ctx, f.o.Now().Add(timeout), f.shows(ctx, st, want, done)); err != nil {
		return f.lagging(st, err)
	}
	f.say(st, st.Cluster, "verified: %s", want)
	return nil
}

// shows is a poll check: the step's cluster shows done, else pending
// saying what it shows instead.
func (f *Fleet) shows(ctx context.Context, st Step, want string, done func(ClusterView) bool) func() error {
	return func() error {
		v, err := f.cluster(ctx, st.Cluster)
		if err != nil {
			return err
		}
		if !done(v) {
			return notYet("%s", describe(v, want))
		}
		return nil
	}
}

// cluster re-reads one cluster (and the Vault state it is judged by).
func (f *Fleet) cluster(ctx context.Context, i int) (ClusterView, error) {
	v, err := f.observeVault(ctx)
	if err != nil {
		return ClusterView{}, err
	}
	view := f.observeCluster(ctx, f.members[i], v)
	if view.Err != nil {
		return view, notYet("%v", view.Err)
	}
	return view, nil
}

// poll calls check every Poll until it returns nil or a final error, or
// deadline passes; a pending error means "keep polling".
func (f *Fleet) poll(ctx context.Context, deadline time.Time, check func() error) error {
	for {
		err := check()
		if err == nil || !isPending(err) {
			return err
		}
		if !f.o.Now().Before(deadline) {
			return err
		}
		if err := sleepUntil(ctx, f.o.Now, f.o.Now().Add(f.o.Poll), f.o.Poll); err != nil {
			return err
		}
	}
}

// lagging turns a step's failure into a BlockedError naming its cluster.
func (f *Fleet) lagging(st Step, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var vaultErr *vaultadmin.Error
	if errors.As(err, &vaultErr) {
		return err
	}
	name := f.members[st.Cluster].Context
	return &BlockedError{Phase: max(NotStarted, st.Phase-1), Clusters: []string{name},
		Reasons: []string{fmt.Sprintf("cluster %s did not reach phase %s: %v", name, st.Phase.Label(), err)}}
}

// describe is what a cluster shows, for a lagging message.
func describe(v ClusterView, want string) string {
	d := fmt.Sprintf("want %s; ca.crt %s, root-cert.pem %s, istio-ca-root-cert %s, cert-chain.pem signed by %s",
		want, short(v.SourceRoots), short(v.CACertsRoots), publishedLabel(v), shortOne(v.ChainRoot))
	if v.CACertsCRLs.Carried {
		d += ", ca-crl.pem has CRLs of " + short(v.CACertsCRLs.Roots)
	}
	if v.CheckIstiod && v.PublishedCRLs.Carried {
		d += ", istio-ca-crl of " + short(v.PublishedCRLs.Roots)
	}
	return d
}

func publishedLabel(v ClusterView) string {
	switch {
	case !v.CheckIstiod:
		return "(not checked)"
	case v.Published == nil:
		return "(not published)"
	}
	return short(v.Published)
}

func short(fps []string) string {
	out := make([]string, len(fps))
	for i, fp := range fps {
		out[i] = shortOne(fp)
	}
	return fmt.Sprint(out)
}

func shortOne(fp string) string {
	if len(fp) > 12 {
		return fp[:12]
	}
	if fp == "" {
		return "?"
	}
	return fp
}

// sleepUntil waits for the clock to reach t, waking every poll to read it
// (the clock may be a test's), or until ctx ends.
func sleepUntil(ctx context.Context, now func() time.Time, t time.Time, poll time.Duration) error {
	for {
		left := t.Sub(now())
		if left <= 0 {
			return nil
		}
		timer := time.NewTimer(min(left, poll))
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
}
