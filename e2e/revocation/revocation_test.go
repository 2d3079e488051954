package revocation

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshtrust/meshtrust/e2e/istio"
	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/e2e/mesh"
	"github.com/meshtrust/meshtrust/e2e/workload"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

// TestRevocation revokes kind3's intermediate with `meshtrust vault revoke`
// and follows it to the data plane: every other cluster's istio-ca-crl, as
// the real istiod publishes it, lists kind3's intermediate; a verifier that
// checks CRLs the way Envoy does refuses kind3's istiod-issued workload
// certificates and still accepts kind1's and kind2's; istiod keeps signing
// after the CRL arrives, and a renewed intermediate goes in with a CRL
// present (istio/istio#61075) while kind1 and kind2 keep talking.
func TestRevocation(t *testing.T) {
	clusters := []string{"kind1", "kind2", "kind3"}
	e := newEnv(t, true, clusters...)
	e.enrol(clusters...)
	inters := map[string]*x509.Certificate{}
	var root *x509.Certificate
	for _, n := range clusters {
		b, err := pki.ParseIstio(e.waitCRLSynced(n).Data)
		if err != nil {
			t.Fatal(err)
		}
		inters[n], root = b.Cert, b.ChainRoot()
	}
	for _, n := range clusters {
		if _, _, err := mesh.PlugIn(e.ctx, e.lab.Cluster(n), e.agents[n], namespace); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("every istiod publishes a CRL of every CA in the mesh", func(t *testing.T) {
		cas := []*x509.Certificate{root, inters["kind1"], inters["kind2"], inters["kind3"]}
		for _, n := range clusters {
			lab.Eventually(t, waitLimit, n+"'s istio-ca-crl", func(ctx context.Context) error {
				crls, err := istio.PublishedCRLs(ctx, e.lab.Cluster(n).Clientset, namespace)
				if err != nil {
					return err
				}
				if missing := pki.MissingCRLs(cas, crls); len(missing) > 0 {
					return fmt.Errorf("no CRL of %s", missing[0].Subject.CommonName)
				}
				return nil
			})
		}
	})
	t.Run("before: every cluster's workloads accept every other's, CRLs checked", func(t *testing.T) {
		for _, from := range clusters {
			for _, to := range clusters {
				if from == to {
					continue
				}
				if err := e.handshake(e.ctx, from, to); err != nil {
					t.Errorf("%s -> %s: %v", from, to, err)
				}
			}
		}
	})

	marks := map[string]lab.LogMark{}
	for _, n := range clusters {
		marks[n] = e.lab.Cluster(n).Istiod.Mark()
	}
	out := e.cli("vault", "revoke", "--cluster", "kind3", "--kubeconfig", e.owner.Kubeconfig,
		"--context", "kind1", "--context", "kind2", "--context", "kind3")
	t.Logf("meshtrust vault revoke --cluster kind3:\n%s", out)
	t.Run("the CLI reports every cluster carrying the new CRL", func(t *testing.T) {
		if !strings.Contains(out, fmt.Sprintf("revoked serial %s", pki.FormatSerial(inters["kind3"].SerialNumber))) {
			t.Errorf("kind3's intermediate %s not reported revoked", pki.FormatSerial(inters["kind3"].SerialNumber))
		}
		if !strings.Contains(out, "Every cluster in the CRL exchange carries the new CRL") {
			t.Error("the CLI does not report every cluster carrying the CRL")
		}
		for _, n := range clusters {
			if !strings.Contains(out, n+"  ") || strings.Contains(out, n+"  not yet") {
				t.Errorf("%s not reported carrying it", n)
			}
		}
	})

	for _, n := range []string{"kind1", "kind2"} {
		t.Run(n+"'s istiod publishes kind3's intermediate as revoked", func(t *testing.T) {
			lab.Eventually(t, waitLimit, n+"'s istio-ca-crl to revoke kind3", func(ctx context.Context) error {
				crls, err := istio.PublishedCRLs(ctx, e.lab.Cluster(n).Clientset, namespace)
				if err != nil {
					return err
				}
				if !pki.Revokes(crls, root, inters["kind3"]) {
					return errors.New("kind3's intermediate is not on it")
				}
				return nil
			})
			lines, err := e.lab.Cluster(n).Istiod.LinesSince(marks[n], istio.ReloadedCRLLine)
			if err != nil || len(lines) == 0 {
				t.Errorf("istiod did not log %q (%v)", istio.ReloadedCRLLine, err)
			}
		})
	}

	t.Run("an Envoy-like verifier refuses kind3's workloads, accepts kind1's and kind2's", func(t *testing.T) {
		kind3, err := e.serve(e.ctx, "kind3")
		if err != nil {
			t.Fatal(err)
		}
		if got := kind3.Intermediate(); got == nil || !got.Equal(inters["kind3"]) {
			t.Fatalf("kind3's istiod signs with %v, not the revoked intermediate", got)
		}
		for _, peer := range []string{"kind1", "kind2"} {
			p, err := e.serve(e.ctx, peer)
			if err != nil {
				t.Fatal(err)
			}
			// The control: without CRLs, the chain is as valid as ever.
			if _, err := workload.Verify(kind3.Identity.Cert.Certificate, p.Roots.Pool, nil, e.agents["kind3"].ID(), time.Now()); err != nil {
				t.Fatalf("without CRLs %s refuses kind3 already: %v", peer, err)
			}
			_, err = workload.Verify(kind3.Identity.Cert.Certificate, p.Roots.Pool, p.CRLs, e.agents["kind3"].ID(), time.Now())
			if err == nil || !strings.Contains(err.Error(), "certificate revoked") {
				t.Errorf("%s's verifier with its istio-ca-crl: %v; want kind3's intermediate refused as revoked", peer, err)
			}
			for _, dir := range [][2]string{{"kind3", peer}, {peer, "kind3"}} {
				if err := e.handshake(e.ctx, dir[0], dir[1]); err == nil || !strings.Contains(err.Error(), "certificate revoked") {
					t.Errorf("%s -> %s: %v; want refused, kind3's intermediate revoked", dir[0], dir[1], err)
				}
			}
		}
		for _, dir := range [][2]string{{"kind1", "kind2"}, {"kind2", "kind1"}} {
			if err := e.handshake(e.ctx, dir[0], dir[1]); err != nil {
				t.Errorf("%s -> %s: %v", dir[0], dir[1], err)
			}
		}
	})

	t.Run("with the CRL present, kind2 renews its intermediate and istiod takes it while kind1 and kind2 keep talking", func(t *testing.T) {
		renewWhileTalking(t, e, inters["kind2"])
	})

	t.Run("no CA key leaves the cluster with its CRL", func(t *testing.T) {
		noKeyInCRLPaths(t, e, clusters)
	})
}

// noKeyInCRLPaths checks every place a cluster's CRLs pass through, which
// the syncer signs with the intermediate's key: the exchange ConfigMap,
// Vault's exchange entry, and the controllers' log.
func noKeyInCRLPaths(t *testing.T, e *env, clusters []string) {
	logText, err := os.ReadFile(e.logs.Name())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range clusters {
		c := e.lab.Cluster(n)
		sec, err := mesh.CACerts(e.ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(sec.Data[pki.CAKeyKey])
		if block == nil {
			t.Fatalf("%s: ca-key.pem is not PEM", n)
		}
		body := base64.StdEncoding.EncodeToString(block.Bytes)[:64]
		cm := &corev1.ConfigMap{}
		if err := c.Client.Get(e.ctx, exchange(), cm); err != nil {
			t.Fatal(err)
		}
		entry, err := e.vault.Logical().ReadWithContext(e.ctx, vaultcontract.CRLExchangePath(n))
		if err != nil || entry == nil {
			t.Fatalf("%s's CRL exchange entry: %v", n, err)
		}
		for what, text := range map[string]string{
			"the exchange ConfigMap":     fmt.Sprint(cm.Data),
			"Vault's CRL exchange entry": fmt.Sprint(entry.Data),
			"the controllers' log":       string(logText),
		} {
			if strings.Contains(text, body) || strings.Contains(text, "PRIVATE KEY") {
				t.Errorf("%s shows %s's CA key", what, n)
			}
		}
	}
}

// renewWhileTalking renews kind2's intermediate while kind1 and kind2 get
// certificates from their istiods and call each other, CRLs checked, and
// requires istiod to take the new intermediate (a ca-crl.pem lacking its
// CRL would make it refuse, istio/istio#61075) with zero failed calls: the
// new intermediate's CRL reaches kind1 before istiod signs with it.
func renewWhileTalking(t *testing.T, e *env, old *x509.Certificate) {
	const wantOnNew = 10
	kind2 := e.lab.Cluster("kind2")
	ctx, stop := context.WithCancel(e.ctx)
	defer stop()
	var mu sync.Mutex
	var calls, onNew int
	var failures []error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			for _, dir := range [][2]string{{"kind1", "kind2"}, {"kind2", "kind1"}} {
				client, err := e.serve(ctx, dir[0])
				var server *mesh.Served
				if err == nil {
					server, err = e.serve(ctx, dir[1])
				}
				if err == nil {
					err = handshake(ctx, client, e.agents[dir[0]].ID(), server, e.agents[dir[1]].ID())
				}
				if ctx.Err() != nil {
					return
				}
				kind2Side := server
				if dir[0] == "kind2" {
					kind2Side = client
				}
				mu.Lock()
				calls++
				if err != nil {
					failures = append(failures, fmt.Errorf("%s -> %s: %w", dir[0], dir[1], err))
				} else if !kind2Side.Intermediate().Equal(old) {
					onNew++
				}
				mu.Unlock()
			}
		}
	}()
	if err := mesh.TriggerRenewal(e.ctx, kind2, 30*time.Second, "TestRevocation"); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, waitLimit, "kind2's cacerts to hold a renewed intermediate", func(ctx context.Context) error {
		sec, err := mesh.CACerts(ctx, kind2)
		if err != nil {
			return err
		}
		b, err := pki.ParseIstio(sec.Data)
		if err != nil {
			return err
		}
		if b.Cert.Equal(old) {
			return errors.New("still the old intermediate")
		}
		return nil
	})
	_, served, err := mesh.WaitIstiodTakes(e.ctx, kind2, e.agents["kind2"], namespace)
	if err != nil {
		t.Fatalf("istiod did not take the renewed intermediate with a CRL present: %v", err)
	}
	t.Logf("kind2's istiod signs with the renewed intermediate, serial %x", served.Intermediate().SerialNumber)
	lab.Eventually(t, waitLimit, fmt.Sprintf("%d calls through kind2's new intermediate", wantOnNew), func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if onNew < wantOnNew {
			return fmt.Errorf("%d so far", onNew)
		}
		return nil
	})
	stop()
	<-done
	t.Logf("%d calls during the renewal, %d through kind2's new intermediate, %d failed", calls, onNew, len(failures))
	if len(failures) > 0 {
		t.Errorf("%d of %d calls failed during the renewal, first: %v", len(failures), calls, failures[0])
	}
}
