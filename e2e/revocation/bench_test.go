package revocation

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshtrust/meshtrust/e2e/istio"
	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/e2e/mesh"
	"github.com/meshtrust/meshtrust/e2e/workload"
	"github.com/meshtrust/meshtrust/internal/pki"
)

// benchRevocations is how many intermediates the benchmark revokes.
const benchRevocations = 5

// BenchmarkRevocationPropagation revokes kind2's intermediate with
// `meshtrust vault revoke` again and again (renewing it in between, which
// the cluster may since revoke keeps it enrolled) and times each from the
// moment the command starts until:
//   - kind1's istiod publishes a CRL in istio-ca-crl that lists it;
//   - kind1's verifier, which checks CRLs as Envoy does with that
//     ConfigMap, refuses a certificate kind2's istiod signed with it;
//   - the command returns, having seen every cluster carry the CRL.
//
// It prints p50 and max of each and asserts nothing. The lab has no
// kubelet: in a cluster add its sync of istiod's cacerts volume and of the
// proxies' istio-ca-crl volume. Run it with -benchtime=1x.
func BenchmarkRevocationPropagation(b *testing.B) {
	e := newBenchEnv(b)
	var published, refused, returned []time.Duration
	b.ResetTimer()
	for range b.N {
		for i := range benchRevocations {
			p, r, ret := e.revokeOnce(b, i)
			published, refused, returned = append(published, p), append(refused, r), append(returned, ret)
		}
	}
	b.StopTimer()
	b.Logf("\n%-50s %8s %8s\n%-50s %8s %8s\n%-50s %8s %8s\n%-50s %8s %8s",
		"from `meshtrust vault revoke` to", "p50", "max",
		"kind1's istio-ca-crl listing the serial", p50(published), maxOf(published),
		"kind1's verifier refusing kind2's workload", p50(refused), maxOf(refused),
		"the command's return (every cluster carries it)", p50(returned), maxOf(returned))
}

func newBenchEnv(b *testing.B) *env {
	b.Helper()
	e := newEnv(b, true, "kind1", "kind2")
	e.enrol("kind1", "kind2")
	for _, n := range []string{"kind1", "kind2"} {
		e.waitCRLSynced(n)
		if _, _, err := mesh.PlugIn(e.ctx, e.lab.Cluster(n), e.agents[n], namespace); err != nil {
			b.Fatal(err)
		}
	}
	return e
}

// revokeOnce gets kind2 a fresh intermediate (after the first round),
// revokes it, and returns the three times.
func (e *env) revokeOnce(b *testing.B, round int) (published, refused, returned time.Duration) {
	b.Helper()
	kind1, kind2 := e.lab.Cluster("kind1"), e.lab.Cluster("kind2")
	if round > 0 {
		if err := mesh.TriggerRenewal(e.ctx, kind2, 30*time.Second, "BenchmarkRevocationPropagation"); err != nil {
			b.Fatal(err)
		}
	}
	var victim *mesh.Served
	lab.Eventually(e.t, waitLimit, "kind2's istiod on an unrevoked intermediate", func(ctx context.Context) error {
		s, err := e.serve(ctx, "kind2")
		if err != nil {
			return err
		}
		peer, err := e.serve(ctx, "kind1")
		if err != nil {
			return err
		}
		if _, err := workload.Verify(s.Identity.Cert.Certificate, peer.Roots.Pool, peer.CRLs, e.agents["kind2"].ID(), time.Now()); err != nil {
			return err
		}
		victim = s
		return nil
	})
	inter, root := victim.Intermediate(), victim.Roots.Certs[0]

	began := time.Now()
	type mark struct {
		what  string
		after time.Duration
	}
	marks := make(chan mark, 2)
	ctx, stop := context.WithTimeout(e.ctx, waitLimit)
	defer stop()
	go func() {
		var sawPublished bool
		_ = lab.WaitEvery(ctx, waitLimit, 10*time.Millisecond, func(ctx context.Context) error {
			crls, err := istio.PublishedCRLs(ctx, kind1.Clientset, namespace)
			if err != nil {
				return err
			}
			if !sawPublished && pki.Revokes(crls, root, inter) {
				sawPublished = true
				marks <- mark{"published", time.Since(began)}
			}
			roots, err := istio.PublishedRoots(ctx, kind1.Clientset, namespace)
			if err != nil {
				return err
			}
			if _, err := workload.Verify(victim.Identity.Cert.Certificate, roots.Pool, crls, e.agents["kind2"].ID(), time.Now()); err != nil && strings.Contains(err.Error(), "certificate revoked") {
				marks <- mark{"refused", time.Since(began)}
				return nil
			}
			return errors.New("still accepted")
		})
	}()
	e.cli("vault", "revoke", "--cluster", "kind2", "--kubeconfig", e.owner.Kubeconfig, "--context", "kind1", "--context", "kind2")
	returned = time.Since(began)
	for range 2 {
		select {
		case m := <-marks:
			if m.what == "published" {
				published = m.after
			} else {
				refused = m.after
			}
		case <-ctx.Done():
			b.Fatalf("round %d: kind1 never refused kind2's revoked intermediate serial %x", round, inter.SerialNumber)
		}
	}
	b.Logf("round %d: serial %x published %s, refused %s, command returned %s", round, inter.SerialNumber,
		published.Round(time.Millisecond), refused.Round(time.Millisecond), returned.Round(time.Millisecond))
	return published, refused, returned
}

func p50(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Round(time.Millisecond).String()
}

func maxOf(ds []time.Duration) string {
	return slices.Max(ds).Round(time.Millisecond).String()
}
