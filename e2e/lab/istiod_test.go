package lab_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshtrust/meshtrust/e2e/istio"
	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/e2e/mesh"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
)

// TestIstiod runs a real istiod in a lab cluster with cacerts written
// straight into the Secret (no meshtrust: around the syncer), and proves
// what the stories rely on, from istiod's side: every listener on
// 127.0.0.1; the projected mesh config is the one it runs; its own
// self-signed CA when there is no cacerts, signing in the mesh config's
// trust domain; the plugged-in CA after a restart; the
// projector's updates reaching istiod's file watcher; which changes istiod
// takes and which it refuses, quoting its log and keeping its CA; a CRL in
// cacerts published in istio-ca-crl; CA keys absent from istiod's log and
// the projector's record, 0600 in the volume; and that an exited istiod is
// reported with its log file.
func TestIstiod(t *testing.T) {
	l := lab.New(t, lab.Options{Clusters: []string{"c1"}, Vault: lab.VaultNone, NoCertManager: true, Istiod: true})
	c := l.Clusters[0]
	i := c.Istiod
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	agent, err := mesh.Workload(c, "default", "sleep")
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	if i.TrustDomain != "c1" || agent.ID() != "spiffe://c1/ns/default/sa/sleep" {
		t.Fatalf("trust domain %q, workload %s; want the cluster's name as trust domain", i.TrustDomain, agent.ID())
	}

	// Every listener of istiod's is on the loopback address, on the ports
	// the lab chose.
	addrs, err := lab.ListeningAddrs(i.PID())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if host, _, _ := net.SplitHostPort(a); host != "127.0.0.1" {
			t.Fatalf("istiod listens on %s; every listener must be on 127.0.0.1 (all: %v)", a, addrs)
		}
	}
	if !slices.Contains(addrs, i.SecureGRPCAddr) || !slices.Contains(addrs, i.HTTPAddr) || !slices.Contains(addrs, i.MonitoringAddr) {
		t.Fatalf("istiod listens on %v, which lacks its CA %s, HTTP %s or monitoring %s address", addrs, i.SecureGRPCAddr, i.HTTPAddr, i.MonitoringAddr)
	}
	t.Logf("istiod listens on %v", addrs)

	// The mesh config istiod runs with is the one projected from the
	// istio ConfigMap.
	active, err := i.ActiveMesh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if active.GetTrustDomain() != "c1" || len(active.GetTrustDomainAliases()) != 0 {
		t.Fatalf("istiod runs with trustDomain %q and aliases %v, want c1 and none", active.GetTrustDomain(), active.GetTrustDomainAliases())
	}

	// No cacerts: istiod's own CA, a self-signed root it publishes.
	requireLine(t, i, 0, istio.SelfSignedCALine)
	var self *mesh.Served
	lab.Eventually(t, mesh.IstiodWait, "a certificate from istiod's self-signed CA", func(ctx context.Context) error {
		var err error
		self, err = issuedUnder(ctx, c, agent, nil)
		return err
	})
	if leaf := self.Identity.Cert.Leaf; len(leaf.URIs) != 1 || leaf.URIs[0].String() != agent.ID() {
		t.Fatalf("self-signed istiod issued %v, want %s (the mesh config's trust domain)", leaf.URIs, agent.ID())
	}
	t.Logf("before cacerts: istiod signs %s with its self-signed root %q", agent.ID(), self.Identity.Cert.Leaf.Issuer)

	now := time.Now()
	r1 := pkitest.New(t, now, pkitest.Spec{CN: "lab root 1"}, nil)
	r2 := pkitest.New(t, now, pkitest.Spec{CN: "lab root 2"}, nil)
	r3 := pkitest.New(t, now, pkitest.Spec{CN: "lab root 3"}, nil)
	i1 := intermediate(t, now, r1)

	// cacerts appears; istiod, on its self-signed CA, watches nothing until
	// it restarts with the volume in place.
	rv := writeCACerts(ctx, t, c, cacerts(t, i1, r1, r1.PEM()))
	if _, err := i.CACerts.WaitProjected(ctx, rv); err != nil {
		t.Fatal(err)
	}
	requireVolume(t, i.CACerts)
	line, _, err := mesh.PlugIn(ctx, c, agent, "default")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after a restart: istiod logged %q and signs with %q", line.Message(), i1.Cert.Subject.CommonName)

	// Refused: istiod logs why and keeps signing with i1.
	i2 := intermediate(t, now, r2)
	other := pkitest.New(t, now, pkitest.Spec{CN: "unrelated key"}, nil)
	for _, tc := range []struct {
		name string
		data map[string][]byte
		want string
	}{
		{"ca-key.pem is another certificate's key", withKey(t, cacerts(t, i1, r1, r1.PEM()), other), "Failed to update new Plug-in CA certs"},
		{"root-cert.pem neither contains nor is contained in the current one", cacerts(t, i2, r2, r2.PEM()), "Updating new ROOT-CA not supported"},
		{"the intermediate does not chain to root-cert.pem", cacerts(t, i2, r2, r1.PEM()), "Failed to update new Plug-in CA certs"},
	} {
		writeCACerts(ctx, t, c, tc.data)
		_, _, err := mesh.WaitIstiodTakes(ctx, c, agent, "default")
		var refused *lab.CACertsRefusedError
		if !errors.As(err, &refused) || !strings.Contains(refused.Line.Text, tc.want) {
			t.Fatalf("%s: waiting for istiod to take it: %v; want a refusal quoting %q", tc.name, err, tc.want)
		}
		if _, err := issuedUnder(ctx, c, agent, i1.Cert); err != nil {
			t.Fatalf("%s: istiod no longer serves the previous CA: %v", tc.name, err)
		}
		if err := published(ctx, c, r1.Cert); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		t.Logf("refused (%s): %v; istiod still signs with %q", tc.name, err, i1.Cert.Subject.CommonName)
	}

	// Accepted: a renewed intermediate, a root added, the old root dropped.
	i1b := intermediate(t, now, r1)
	i3 := intermediate(t, now, r3)
	for _, tc := range []struct {
		name     string
		ca, root *pkitest.Cert
		roots    []*pkitest.Cert
	}{
		{"a renewed intermediate", i1b, r1, []*pkitest.Cert{r1}},
		{"root-cert.pem gains a root", i1b, r1, []*pkitest.Cert{r1, r3}},
		{"root-cert.pem loses the old root, the intermediate moves to the new one", i3, r3, []*pkitest.Cert{r3}},
	} {
		var bundle []byte
		var want []*x509.Certificate
		for _, r := range tc.roots {
			bundle = append(bundle, r.PEM()...)
			want = append(want, r.Cert)
		}
		writeCACerts(ctx, t, c, cacerts(t, tc.ca, tc.root, bundle))
		r, _, err := mesh.WaitIstiodTakes(ctx, c, agent, "default")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if err := published(ctx, c, want...); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		t.Logf("accepted (%s): %s", tc.name, r.Verdict.Message())
	}

	// A CRL in cacerts: istiod publishes it in every namespace. It takes
	// ca-crl.pem only with a CRL from every CA of cert-chain.pem, the root
	// too (Envoy needs one for each CA of a chain once any has one).
	crl := append(revocationList(t, now, i3, i1b.Cert), revocationList(t, now, r3)...)
	withCRL := cacerts(t, i3, r3, r3.PEM())
	withCRL[istio.CRLKey] = crl
	mark := i.Mark()
	writeCACerts(ctx, t, c, withCRL)
	if _, _, err := mesh.WaitIstiodTakes(ctx, c, agent, "default"); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, mesh.IstiodWait, "istiod to publish the CRL in istio-ca-crl", func(ctx context.Context) error {
		got, err := istio.PublishedCRL(ctx, c.Clientset, "default")
		if err != nil {
			return err
		}
		if !bytes.Equal(got, crl) {
			return errors.New("istio-ca-crl holds another CRL")
		}
		return nil
	})
	requireLine(t, i, mark, istio.ReloadedCRLLine)
	t.Logf("ca-crl.pem in cacerts: istiod logged %q and published it in istio-ca-crl", istio.ReloadedCRLLine)

	// The CA keys stay secret: the volume holds them as 0600, and neither
	// istiod's log nor the projector's record shows one.
	st, err := os.Stat(filepath.Join(i.CACerts.Dir, pki.CAKeyKey))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s in the cacerts volume: %v, mode %v; want 0600", pki.CAKeyKey, err, st.Mode().Perm())
	}
	logText, err := os.ReadFile(i.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []*pkitest.Cert{i1, i1b, i2, i3, other} {
		if body := keyBody(t, k); bytes.Contains(logText, []byte(body)) || bytes.Contains(logText, []byte("PRIVATE KEY")) {
			t.Fatalf("istiod's log %s shows a CA private key", i.LogPath)
		}
		if strings.Contains(fmt.Sprint(i.CACerts.Projections()), keyBody(t, k)) {
			t.Fatal("the projector's record shows a CA private key")
		}
	}

	// istiod exits: what waits on it says so and names its log.
	if err := i.Kill(); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 30*time.Second, "the lab to notice istiod's exit", func(context.Context) error {
		if i.Exited() == nil {
			return errors.New("istiod still counts as running")
		}
		return nil
	})
	_, _, err = mesh.WaitIstiodTakes(ctx, c, agent, "default")
	if err == nil || !strings.Contains(err.Error(), i.LogPath) {
		t.Fatalf("waiting on an exited istiod: %v; want an error naming %s", err, i.LogPath)
	}
	t.Logf("istiod killed: %v", err)
}

// issuedUnder gets a certificate from istiod (mesh.Serve checks it
// verifies with what istiod publishes) and checks that wantCA signed it
// (nil: a root directly).
func issuedUnder(ctx context.Context, c *lab.Cluster, agent *istio.Agent, wantCA *x509.Certificate) (*mesh.Served, error) {
	s, err := mesh.Serve(ctx, c, agent, "default")
	if err != nil {
		return nil, err
	}
	got := s.Intermediate()
	switch {
	case wantCA == nil && got != nil:
		return nil, fmt.Errorf("signed by %q, want a root directly", got.Subject.CommonName)
	case wantCA != nil && (got == nil || !got.Equal(wantCA)):
		return nil, fmt.Errorf("istiod signs with %v, not %q", got, wantCA.Subject.CommonName)
	}
	return s, nil
}

func published(ctx context.Context, c *lab.Cluster, want ...*x509.Certificate) error {
	got, err := istio.PublishedRoots(ctx, c.Clientset, "default")
	if err != nil {
		return err
	}
	if len(got.Certs) != len(want) {
		return fmt.Errorf("istio-ca-root-cert holds %d roots, want %d", len(got.Certs), len(want))
	}
	for n := range want {
		if !got.Certs[n].Equal(want[n]) {
			return fmt.Errorf("istio-ca-root-cert root %d is %q, want %q", n, got.Certs[n].Subject.CommonName, want[n].Subject.CommonName)
		}
	}
	return nil
}

func requireLine(t *testing.T, i *lab.Istiod, mark lab.LogMark, line string) {
	t.Helper()
	lines, err := i.LinesSince(mark, line)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) == 0 {
		t.Fatalf("istiod did not log %q (log: %s)", line, i.LogPath)
	}
}

// requireVolume checks kubelet's layout: every key a symlink through
// ..data into a hidden timestamped directory.
func requireVolume(t *testing.T, p *lab.Projector) {
	t.Helper()
	target, err := os.Readlink(filepath.Join(p.Dir, "..data"))
	if err != nil || !strings.HasPrefix(target, "..20") {
		t.Fatalf("%s/..data -> %q (%v), want a timestamped directory", p.Dir, target, err)
	}
	for _, key := range []string{pki.CACertKey, pki.CAKeyKey, pki.CertChainKey, pki.RootCertKey} {
		if got, err := os.Readlink(filepath.Join(p.Dir, key)); err != nil || got != "..data/"+key {
			t.Fatalf("%s/%s -> %q (%v), want ..data/%s", p.Dir, key, got, err, key)
		}
	}
}

func intermediate(t *testing.T, now time.Time, root *pkitest.Cert) *pkitest.Cert {
	return pkitest.New(t, now, pkitest.Spec{CN: "c1 intermediate", MaxPathLenZero: true, PermittedURIDomains: []string{"c1"}}, root)
}

// cacerts is Istio's layout for ca signed by root, with roots as
// root-cert.pem.
func cacerts(t *testing.T, ca, root *pkitest.Cert, roots []byte) map[string][]byte {
	return map[string][]byte{
		pki.CACertKey:    ca.PEM(),
		pki.CAKeyKey:     ca.KeyPEM(t),
		pki.CertChainKey: append(ca.PEM(), root.PEM()...),
		pki.RootCertKey:  roots,
	}
}

// revocationList is a PEM CRL signed by ca that revokes the certificates
// given.
func revocationList(t *testing.T, now time.Time, ca *pkitest.Cert, revoked ...*x509.Certificate) []byte {
	var entries []x509.RevocationListEntry
	for _, r := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: r.SerialNumber, RevocationTime: now})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(1),
		ThisUpdate:                now.Add(-time.Minute),
		NextUpdate:                now.Add(24 * time.Hour),
		RevokedCertificateEntries: entries,
	}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// keyBody is the base64 body of the key's PEM, the part a leak would show.
func keyBody(t *testing.T, c *pkitest.Cert) string {
	block, _ := pem.Decode(c.KeyPEM(t))
	return base64.StdEncoding.EncodeToString(block.Bytes)[:64]
}

func withKey(t *testing.T, data map[string][]byte, other *pkitest.Cert) map[string][]byte {
	data[pki.CAKeyKey] = other.KeyPEM(t)
	return data
}

// writeCACerts writes the cacerts Secret as an operator with kubectl would,
// and returns its resourceVersion.
func writeCACerts(ctx context.Context, t *testing.T, c *lab.Cluster, data map[string][]byte) string {
	t.Helper()
	secrets := c.Clientset.CoreV1().Secrets(istio.Namespace)
	s, err := secrets.Get(ctx, istio.CACertsSecret, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		s, err = secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: istio.Namespace, Name: istio.CACertsSecret}, Data: data}, metav1.CreateOptions{})
	case err == nil:
		s.Data = data
		s, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("writing Secret %s/%s: %v", istio.Namespace, istio.CACertsSecret, err)
	}
	return s.ResourceVersion
}
