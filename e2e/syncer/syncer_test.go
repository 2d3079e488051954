// Package syncer_test runs the syncer in-process against a real lab cluster
// (kube-apiserver, etcd and cert-manager's own controllers), with
// intermediates signed by a real Vault through meshtrust's VaultClusterIssuer,
// enrolled with the meshtrust CLI.
package syncer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/syncer"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(benchChildEnv); mode != "" {
		os.Exit(benchChild(mode))
	}
	// Each manager logs to its own file; the global logger only carries
	// controller-runtime's "informer did not sync" noise from managers the
	// tests kill on purpose.
	ctrllog.SetLogger(logr.Discard())
	os.Exit(m.Run())
}

func TestSyncerOnLab(t *testing.T) {
	l := lab.New(t, lab.Options{IssuanceBackoff: 10 * time.Second})
	c := l.Clusters[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	spec := vaultSource(ctx, t, l, c)

	// One syncer on the real clock serves the namespaces that need no
	// restarts; the other subtests run their own.
	shared := startSyncer(t, c, clock.RealClock{}, []string{"layout", "foreign", "rogue"}, nil)

	t.Run("layout key by key", func(t *testing.T) {
		intermediate(ctx, t, c, spec, "layout", nil)
		waitReady(t, c, "layout", 1)
		cacerts, src := waitCACertsFromSource(t, c, "layout", 60*time.Second)
		// The VaultClusterIssuer hands the syncer Vault's CRLs; ca-crl.pem
		// follows the first write once they are there.
		lab.Eventually(t, 60*time.Second, "ca-crl.pem in cacerts", func(ctx context.Context) error {
			var err error
			if cacerts, err = getSecret(ctx, c, "layout", "cacerts"); err != nil {
				return err
			}
			if len(cacerts.Data[pki.CRLKey]) == 0 {
				return errors.New("no ca-crl.pem yet")
			}
			return nil
		})
		b := assertWhole(t, cacerts, time.Now())

		if got := strings.Join(keys(cacerts.Data), ","); got != "ca-cert.pem,ca-crl.pem,ca-key.pem,cert-chain.pem,root-cert.pem" {
			t.Fatalf("keys = %s", got)
		}
		srcChain, _ := pki.DecodeCertificates(src.Data["tls.crt"], pki.MaxChainPEMSize)
		srcRoots, _ := pki.DecodeCertificates(src.Data["ca.crt"], pki.MaxRootBundlePEMSize)
		if !bytes.Equal(cacerts.Data[pki.CACertKey], pki.EncodeCertificates(srcChain[0])) {
			t.Error("ca-cert.pem is not tls.crt's first certificate")
		}
		srcKey, err := pki.ParsePrivateKey(src.Data["tls.key"])
		if err != nil || !bytes.Equal(cacerts.Data[pki.CAKeyKey], srcKey.PEM) {
			t.Error("ca-key.pem is not tls.key")
		}
		if want := pki.EncodeCertificates(srcChain[0], srcRoots[0]); !bytes.Equal(cacerts.Data[pki.CertChainKey], want) {
			t.Error("cert-chain.pem is not intermediate then root")
		}
		if !bytes.Equal(cacerts.Data[pki.RootCertKey], pki.EncodeCertificates(srcRoots...)) {
			t.Error("root-cert.pem is not ca.crt")
		}
		if got := b.Cert.PermittedURIDomains; !b.Cert.PermittedDNSDomainsCritical || !slices.Equal(got, []string{c.Name}) || b.Cert.MaxPathLen != 0 || !b.Cert.MaxPathLenZero {
			t.Errorf("intermediate from Vault: permitted URI domains %v (critical %v), path length %d: want only %s, critical, 0",
				got, b.Cert.PermittedDNSDomainsCritical, b.Cert.MaxPathLen, c.Name)
		}
		if !b.Cert.IsCA || cacerts.Labels[decision.ManagedByLabel] != decision.ManagedByValue ||
			cacerts.Annotations[syncer.AnnotationSource] != "layout/istio-ca" ||
			cacerts.Annotations[syncer.AnnotationRootFPs] != pki.Fingerprint(srcRoots[0]) {
			t.Errorf("ownership metadata: labels %v annotations %v", cacerts.Labels, cacerts.Annotations)
		}
	})

	t.Run("renewal gives a new serial under the same root", func(t *testing.T) {
		waitReady(t, c, "layout", 1)
		before, _ := waitCACertsFromSource(t, c, "layout", 30*time.Second)
		rev := decision.Revision(getCert(ctx, t, c, "layout"))
		renew(ctx, t, c, "layout")
		waitReady(t, c, "layout", rev+1)
		began := time.Now()
		after, _ := waitCACertsFromSource(t, c, "layout", 30*time.Second)
		t.Logf("cacerts followed the renewed Secret after %s (figure only; not asserted)", time.Since(began))
		assertWhole(t, after, time.Now())
		if after.Annotations[syncer.AnnotationSerial] == before.Annotations[syncer.AnnotationSerial] {
			t.Error("serial did not change")
		}
		if !bytes.Equal(after.Data[pki.RootCertKey], before.Data[pki.RootCertKey]) {
			t.Error("root changed")
		}
	})

	t.Run("a wrong Istio trust domain is a Warning event", func(t *testing.T) {
		testMeshTrustDomainWarning(ctx, t, c)
	})

	t.Run("unmanaged cacerts is never clobbered", func(t *testing.T) {
		must(t, c.EnsureNamespace(ctx, "foreign"))
		theirs := &corev1.Secret{}
		theirs.Namespace, theirs.Name = "foreign", "cacerts"
		theirs.Data = map[string][]byte{"ca-cert.pem": []byte("not ours")}
		must(t, c.Client.Create(ctx, theirs))
		intermediate(ctx, t, c, spec, "foreign", nil)
		lab.Eventually(t, 60*time.Second, "Warning event UnmanagedCACerts", func(ctx context.Context) error {
			return hasEvent(ctx, c, "foreign", "istio-ca", decision.ReasonUnmanagedTarget, "meshtrust.io/adopt")
		})
		s, err := getSecret(ctx, c, "foreign", "cacerts")
		if err != nil || len(s.Data) != 1 || string(s.Data["ca-cert.pem"]) != "not ours" {
			t.Fatalf("unmanaged cacerts changed: %v %v", err, keys(s.Data))
		}
	})

	t.Run("a Certificate of another issuer never replaces cacerts", func(t *testing.T) {
		testForeignIssuer(ctx, t, c, spec, shared)
	})

	t.Run("an allowed CA issuer's intermediate needs a URI name constraint", func(t *testing.T) {
		testAllowedCAIssuer(ctx, t, c)
	})

	t.Run("scheduled rotation fires once per slot across restarts", func(t *testing.T) {
		testScheduledRotation(ctx, t, c, spec)
	})

	t.Run("killed mid-sync leaves old or new, never a mix", func(t *testing.T) {
		testKilledMidSync(ctx, t, c, spec)
	})
}

func testScheduledRotation(ctx context.Context, t *testing.T, c *lab.Cluster, spec cmapi.CertificateSpec) {
	const ns = "schedule"
	intermediate(ctx, t, c, spec, ns, map[string]string{syncer.AnnotationRotationSchedule: "0 * * * *"})
	waitReady(t, c, ns, 1)
	// The fake clock starts only after issuance: cert-manager stamps
	// NotBefore with the real time, truncated to the second, and a clock
	// behind it would rightly find the bundle not yet valid.
	clk := clocktesting.NewFakeClock(time.Now())
	run := startSyncer(t, c, clk, []string{ns}, nil)
	waitCACertsFromSource(t, c, ns, 30*time.Second)
	crt := getCert(ctx, t, c, ns)
	if crt.Annotations[syncer.AnnotationLastRotation] != "" || decision.Revision(crt) != 1 {
		t.Fatalf("rotated before any slot: %v", crt.Annotations)
	}

	// Move past the first hourly slot after issuance: exactly one renewal.
	slot1 := decision.Baseline(crt).UTC().Truncate(time.Hour).Add(time.Hour)
	clk.SetTime(slot1.Add(time.Minute))
	poke(ctx, t, c, ns)
	waitRecorded(t, c, ns, slot1)
	waitReady(t, c, ns, 2)
	waitCACertsFromSource(t, c, ns, 30*time.Second)

	// Restart inside the same slot: it must not fire again.
	run.stop(t)
	run = startSyncer(t, c, clk, []string{ns}, nil)
	settle(ctx, t, c, ns, run)
	if crt := getCert(ctx, t, c, ns); decision.Revision(crt) != 2 || decision.Issuing(crt) {
		t.Fatalf("slot fired again after restart: revision %d, issuing %v", decision.Revision(crt), decision.Issuing(crt))
	}

	// Down across three slots: one renewal at start-up, for the latest slot.
	run.stop(t)
	slot4 := slot1.Add(3 * time.Hour)
	clk.SetTime(slot4.Add(time.Minute))
	run = startSyncer(t, c, clk, []string{ns}, nil)
	waitRecorded(t, c, ns, slot4)
	waitReady(t, c, ns, 3)
	settle(ctx, t, c, ns, run)
	if crt := getCert(ctx, t, c, ns); decision.Revision(crt) != 3 || decision.Issuing(crt) {
		t.Fatalf("missed slots fired more than once: revision %d", decision.Revision(crt))
	}
	waitCACertsFromSource(t, c, ns, 30*time.Second)
}

// waitRecorded waits for the Certificate to record slot.
func waitRecorded(t *testing.T, c *lab.Cluster, ns string, slot time.Time) {
	t.Helper()
	want := slot.UTC().Format(time.RFC3339)
	lab.Eventually(t, 30*time.Second, "slot "+want+" recorded", func(ctx context.Context) error {
		crt, err := fetchCert(ctx, c, ns)
		if err != nil {
			return err
		}
		if got := crt.Annotations[syncer.AnnotationLastRotation]; got != want {
			return fmt.Errorf("recorded %q", got)
		}
		return nil
	})
}

// settle pokes the Certificate and waits until this manager has reconciled
// it after the poke, so that "nothing happened" is an observation, not a
// guess after a sleep.
func settle(ctx context.Context, t *testing.T, c *lab.Cluster, ns string, run *running) {
	t.Helper()
	lab.Eventually(t, 30*time.Second, "initial reconcile", func(context.Context) error {
		if run.syncs(t) == 0 {
			return fmt.Errorf("no reconcile yet")
		}
		return nil
	})
	before := run.syncs(t)
	poke(ctx, t, c, ns)
	lab.Eventually(t, 30*time.Second, "reconcile after poke", func(context.Context) error {
		if run.syncs(t) <= before {
			return fmt.Errorf("no reconcile yet")
		}
		return nil
	})
}

// killingClient cancels its manager and the write itself when the syncer
// writes cacerts, at a point chosen per attempt: before the request is sent,
// racing it, or right after it returns.
type killingClient struct {
	client.Client
	kill   context.CancelFunc
	mode   int
	killed atomic.Bool
}

func (k *killingClient) write(ctx context.Context, obj client.Object, do func(context.Context) error) error {
	if _, ok := obj.(*corev1.Secret); !ok || obj.GetName() != "cacerts" || k.killed.Swap(true) {
		return do(ctx)
	}
	defer k.kill()
	switch k.mode {
	case 0: // dies just before the write
		return context.Canceled
	case 1: // dies while the request is in flight
		wctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(time.Duration(rand.IntN(3000))*time.Microsecond, cancel) // fault injection, not a wait
		return do(wctx)
	default: // dies just after
		return do(ctx)
	}
}

func (k *killingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	return k.write(ctx, obj, func(ctx context.Context) error { return k.Client.Create(ctx, obj, opts...) })
}

func (k *killingClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	return k.write(ctx, obj, func(ctx context.Context) error { return k.Client.Update(ctx, obj, opts...) })
}

func testKilledMidSync(ctx context.Context, t *testing.T, c *lab.Cluster, spec cmapi.CertificateSpec) {
	const ns = "kill"
	intermediate(ctx, t, c, spec, ns, nil)
	run := startSyncer(t, c, clock.RealClock{}, []string{ns}, nil)
	waitReady(t, c, ns, 1)
	old, _ := waitCACertsFromSource(t, c, ns, 30*time.Second)
	run.stop(t)

	for mode, name := range []string{"before the write", "during the write", "after the write"} {
		rev := decision.Revision(getCert(ctx, t, c, ns))
		renew(ctx, t, c, ns)
		waitReady(t, c, ns, rev+1)

		var kc *killingClient
		run := startSyncer(t, c, clock.RealClock{}, []string{ns}, func(cl client.Client, kill context.CancelFunc) client.Client {
			kc = &killingClient{Client: cl, kill: kill, mode: mode}
			return kc
		})
		select {
		case <-run.done:
		case <-time.After(60 * time.Second):
			t.Fatalf("%s: the syncer never reached the cacerts write", name)
		}
		s, err := getSecret(ctx, c, ns, "cacerts")
		if err != nil {
			t.Fatal(err)
		}
		b := assertWhole(t, s, time.Now())
		state := "new"
		if bytes.Equal(s.Data[pki.CACertKey], old.Data[pki.CACertKey]) {
			state = "old"
		}
		t.Logf("killed %s: cacerts holds the %s bundle (serial %s)", name, state, b.Cert.SerialNumber.Text(16))

		// The next controller finishes the job.
		run = startSyncer(t, c, clock.RealClock{}, []string{ns}, nil)
		old, _ = waitCACertsFromSource(t, c, ns, 30*time.Second)
		assertWhole(t, old, time.Now())
		run.stop(t)
	}
}

func hasEvent(ctx context.Context, c *lab.Cluster, ns, obj, reason, text string) error {
	var list corev1.EventList
	if err := c.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return err
	}
	var seen []string
	for _, e := range list.Items {
		if e.InvolvedObject.Name != obj {
			continue
		}
		msg := e.Message
		if e.Reason == reason && strings.Contains(msg, text) {
			return nil
		}
		seen = append(seen, e.Reason)
	}
	return fmt.Errorf("no %s event on %s/%s (seen %v)", reason, ns, obj, seen)
}

func keys(m map[string][]byte) []string {
	return slices.Sorted(maps.Keys(m))
}
