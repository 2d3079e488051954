package mesh

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/meshtrust/meshtrust/e2e/istio"
	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/internal/pki"
)

// IstiodWait bounds a wait for istiod to take a cacerts; istiod reacts to
// a projected change in well under a second, so this is for loaded CI.
const IstiodWait = 2 * time.Minute

// Workload is the Istio agent of a workload in cluster c, with namespace ns
// and ServiceAccount sa, getting its certificates from c's istiod.
func Workload(c *lab.Cluster, ns, sa string) (*istio.Agent, error) {
	if c.Istiod == nil {
		return nil, fmt.Errorf("cluster %s runs no istiod (lab.Options.Istiod)", c.Name)
	}
	return istio.NewAgent(istio.AgentConfig{
		Kube: c.Clientset, CAAddr: c.Istiod.SecureGRPCAddr, ClusterID: c.Name, TrustDomain: c.Istiod.TrustDomain,
		Namespace: ns, ServiceAccount: sa, TTL: WorkloadTTL,
	}), nil
}

// Served is what istiod hands out: a fresh workload certificate, and the
// bundle and CRLs it publishes in that workload's namespace.
type Served struct {
	Identity *istio.Identity
	Roots    *istio.Bundle
	// CRLs are istio-ca-crl's, which the workload's proxy checks peers
	// against; none when istiod publishes none.
	CRLs []*x509.RevocationList
}

// Intermediate is the CA that signed the workload certificate, nil when a
// root signed it directly (istiod's self-signed CA).
func (s *Served) Intermediate() *x509.Certificate {
	if len(s.Identity.Intermediates) == 0 {
		return nil
	}
	return s.Identity.Intermediates[0]
}

// Serve gets a certificate for agent from istiod and the bundle istiod
// publishes in its namespace, and checks that the certificate verifies
// with that bundle, as the workload's peers in the cluster will verify it.
// (CreateCertificate's own root bundle may briefly be ahead of the
// ConfigMap, which istiod updates after its CA.)
func Serve(ctx context.Context, c *lab.Cluster, agent *istio.Agent, ns string) (*Served, error) {
	id, err := agent.Certificate(ctx)
	if err != nil {
		return nil, err
	}
	roots, err := istio.PublishedRoots(ctx, c.Clientset, ns)
	if err != nil {
		return nil, err
	}
	inter := x509.NewCertPool()
	for _, ic := range id.Intermediates {
		inter.AddCert(ic)
	}
	if _, err := id.Cert.Leaf.Verify(x509.VerifyOptions{Roots: roots.Pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%s: istiod's certificate does not verify with its own %s: %w", c.Name, istio.RootCertConfigMap, err)
	}
	crls, err := istio.PublishedCRLs(ctx, c.Clientset, ns)
	if err != nil {
		return nil, err
	}
	return &Served{Identity: id, Roots: roots, CRLs: crls}, nil
}

// WaitIstiodTakes waits until c's istiod has taken the cluster's current
// cacerts: the projector has put it into ROOT_CA_DIR, istiod has reacted to
// that version (unless it started after it, and loaded it then), and istiod
// signs with its intermediate and both publishes its root-cert.pem (same
// certificates, same order) and returns it from CreateCertificate. If istiod refuses the cacerts, the error (a
// *lab.CACertsRefusedError) quotes its log line; if istiod exits, the error
// names its log file. It returns istiod's reaction (zero if it loaded the
// files at start) and what it serves.
func WaitIstiodTakes(ctx context.Context, c *lab.Cluster, agent *istio.Agent, ns string) (lab.Reaction, *Served, error) {
	i := c.Istiod
	sec, err := CACerts(ctx, c)
	if err != nil {
		return lab.Reaction{}, nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, IstiodWait)
	p, err := i.CACerts.WaitProjected(pctx, sec.ResourceVersion)
	cancel()
	if err != nil {
		return lab.Reaction{}, nil, err
	}
	var r lab.Reaction
	if started := i.StartedAt(); !started.IsZero() && started.Before(p.At) {
		if r, err = i.WaitReaction(ctx, 0, p.At, IstiodWait); err != nil {
			return r, nil, err
		}
		if r.Refused {
			return r, nil, &lab.CACertsRefusedError{Cluster: c.Name, Line: r.Verdict, LogPath: i.LogPath}
		}
	}
	want, err := pki.DecodeCertificates(sec.Data[pki.CACertKey], pki.MaxChainPEMSize)
	if err != nil || len(want) != 1 {
		return r, nil, fmt.Errorf("%s: cacerts %s: %d certificates (%v)", c.Name, pki.CACertKey, len(want), err)
	}
	var served *Served
	err = lab.WaitFor(ctx, IstiodWait, func(ctx context.Context) error {
		if err := i.Exited(); err != nil {
			return lab.Final(err)
		}
		s, err := Serve(ctx, c, agent, ns)
		if err != nil {
			return err
		}
		if got := s.Intermediate(); got == nil || !got.Equal(want[0]) {
			return fmt.Errorf("%s: istiod signs with %s, not cacerts' intermediate (serial %x)", c.Name, describeCA(got), want[0].SerialNumber)
		}
		if !sameCerts(s.Roots.PEM, sec.Data[pki.RootCertKey]) || !sameCerts(s.Identity.RootsPEM, sec.Data[pki.RootCertKey]) {
			return fmt.Errorf("%s: istiod's %s and CreateCertificate's root bundle are not yet cacerts' %s", c.Name, istio.RootCertConfigMap, pki.RootCertKey)
		}
		served = s
		return nil
	})
	return r, served, err
}

// PlugIn restarts c's istiod so that it takes the cluster's cacerts, as
// Istio's plug-in CA guide asks once cacerts exists (an istiod that started
// on its own self-signed CA does not watch ROOT_CA_DIR), and waits until it
// signs with it. It returns istiod's start-up line about its CA.
func PlugIn(ctx context.Context, c *lab.Cluster, agent *istio.Agent, ns string) (lab.LogLine, *Served, error) {
	mark := c.Istiod.Mark()
	if err := c.Istiod.Restart(ctx); err != nil {
		return lab.LogLine{}, nil, err
	}
	_, served, err := WaitIstiodTakes(ctx, c, agent, ns)
	if err != nil {
		return lab.LogLine{}, nil, err
	}
	lines, err := c.Istiod.LinesSince(mark, istio.PluggedCALine)
	if err != nil {
		return lab.LogLine{}, nil, err
	}
	if len(lines) == 0 {
		return lab.LogLine{}, nil, fmt.Errorf("%s: istiod signs with cacerts but never logged %q (log: %s)", c.Name, istio.PluggedCALine, c.Istiod.LogPath)
	}
	return lines[0], served, nil
}

func describeCA(c *x509.Certificate) string {
	if c == nil {
		return "its root directly"
	}
	return fmt.Sprintf("%q (serial %x)", c.Subject.CommonName, c.SerialNumber)
}

// sameCerts reports whether two PEM bundles hold the same certificates in
// the same order (whatever the text around them).
func sameCerts(a, b []byte) bool {
	ca, errA := pki.DecodeCertificates(a, pki.MaxRootBundlePEMSize)
	cb, errB := pki.DecodeCertificates(b, pki.MaxRootBundlePEMSize)
	if errors.Join(errA, errB) != nil || len(ca) != len(cb) {
		return false
	}
	for n := range ca {
		if !bytes.Equal(ca[n].Raw, cb[n].Raw) {
			return false
		}
	}
	return true
}
