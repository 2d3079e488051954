package revocation

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/e2e/mesh"
	"github.com/meshtrust/meshtrust/internal/crlexchange"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
	"github.com/meshtrust/meshtrust/syncer"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

// TestCRLBadInput feeds the syncer, through the CRL exchange ConfigMap its
// issuer fills, an expired CRL (a real one of Vault's, built with a
// one-second expiry), a CRL signed by a foreign CA, a garbage file and an
// oversized CRL. Each time cacerts' ca-crl.pem stays byte for byte as it
// was, and the Certificate gets a Warning event, CRLSynced=False and the
// failure counted in meshtrust_crl_validation_failures_total{check}. The
// issuer is stopped meanwhile, so that only the test writes the ConfigMap.
// A Certificate in the tls layout, which cannot carry a CRL, says so.
func TestCRLBadInput(t *testing.T) {
	e := newEnv(t, false, "kind1")
	e.enrol("kind1")
	c := e.lab.Cluster("kind1")
	good := e.waitCRLSynced("kind1")

	tlsCrt := tlsLayoutCertificate(t, e, c)
	t.Run("the tls layout says it cannot carry a CRL", func(t *testing.T) {
		lab.Eventually(t, waitLimit, "a Warning event on the tls-layout Certificate", func(ctx context.Context) error {
			evs, err := e.events(ctx, c, tlsCrt)
			if err != nil {
				return err
			}
			for _, ev := range evs {
				if strings.HasPrefix(ev, "Warning "+decision.ReasonCRLNotCarried+" ") && strings.Contains(ev, "tls layout cannot carry a CRL") {
					return nil
				}
			}
			return fmt.Errorf("events: %q", evs)
		})
	})

	expired := expiredVaultCRL(t, e)
	e.start("kind1", false) // the syncer alone from here on
	foreign := pkitest.New(t, time.Now(), pkitest.Spec{CN: "foreign CA"}, nil)
	var many []*x509.Certificate
	for range 6000 {
		many = append(many, foreign.Cert)
	}
	oversized := pkitest.CRLPEM(foreign.CRL(t, time.Now(), pkitest.CRLSpec{Revoked: many}))
	if len(oversized) <= pki.MaxCRLPEMSize {
		t.Fatalf("the oversized CRL is %d bytes, not over %d", len(oversized), pki.MaxCRLPEMSize)
	}
	for _, tc := range []struct {
		name  string
		input []byte
		check pki.Check
	}{
		{"an expired CRL of Vault's root", expired, pki.CheckCRLExpired},
		{"a CRL signed by a foreign CA", pkitest.CRLPEM(foreign.CRL(t, time.Now(), pkitest.CRLSpec{})), pki.CheckCRLIssuer},
		{"a garbage file", []byte("garbage\x00 not a CRL"), pki.CheckCRLPEM},
		{"an oversized CRL", oversized, pki.CheckCRLSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := counter(e.metrics["kind1"], "meshtrust_crl_validation_failures_total", map[string]string{"check": string(tc.check)})
			setVaultCRLs(t, e, c, tc.input)
			lab.Eventually(t, waitLimit, "the refusal: event, condition and metric", func(ctx context.Context) error {
				crt, err := mesh.Intermediate(ctx, c)
				if err != nil {
					return err
				}
				evs, err := e.events(ctx, c, crt)
				if err != nil {
					return err
				}
				var found bool
				for _, ev := range evs {
					found = found || strings.HasPrefix(ev, "Warning "+decision.ReasonInvalidCRL+" ") && strings.Contains(ev, string(tc.check)) && strings.Contains(ev, crlexchange.KeyVaultCRLs)
				}
				if !found {
					return fmt.Errorf("no Warning %s naming %s and %s", decision.ReasonInvalidCRL, tc.check, crlexchange.KeyVaultCRLs)
				}
				cond := apiutil.GetCertificateCondition(crt, syncer.ConditionCRLSynced)
				if cond == nil || cond.Status != cmmeta.ConditionFalse || cond.Reason != decision.ReasonInvalidCRL || !strings.Contains(cond.Message, string(tc.check)) {
					return fmt.Errorf("condition %+v", cond)
				}
				if n := counter(e.metrics["kind1"], "meshtrust_crl_validation_failures_total", map[string]string{"check": string(tc.check)}); n <= before {
					return fmt.Errorf("meshtrust_crl_validation_failures_total{check=%q} = %v, was %v", tc.check, n, before)
				}
				return nil
			})
			now, err := mesh.CACerts(e.ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range good.Data {
				if !bytes.Equal(now.Data[k], v) {
					t.Errorf("cacerts key %s changed", k)
				}
			}
		})
	}
}

// setVaultCRLs writes the exchange ConfigMap's Vault CRLs as a broken or
// hostile writer would.
func setVaultCRLs(t *testing.T, e *env, c *lab.Cluster, pem []byte) {
	t.Helper()
	key := exchange()
	lab.Eventually(t, waitLimit, "writing "+key.String(), func(ctx context.Context) error {
		cm := &corev1.ConfigMap{}
		if err := c.Client.Get(ctx, key, cm); err != nil {
			return err
		}
		cm.Data[crlexchange.KeyVaultCRLs] = string(pem)
		return c.Client.Update(ctx, cm)
	})
}

// expiredVaultCRL is a CRL of Vault's root that has expired: Vault builds
// it with a one-second expiry, then its CRL settings are put back and the
// CRL rebuilt, so the mount itself stays healthy.
func expiredVaultCRL(t *testing.T, e *env) []byte {
	t.Helper()
	ctx := e.ctx
	cfg := func(data map[string]any) {
		if _, err := e.vault.Logical().WriteWithContext(ctx, "pki/config/crl", data); err != nil {
			t.Fatal(err)
		}
		if _, err := e.vault.Logical().ReadWithContext(ctx, "pki/crl/rotate"); err != nil {
			t.Fatal(err)
		}
	}
	cfg(map[string]any{"auto_rebuild": false, "expiry": "1s"})
	resp, err := e.vault.Logical().ReadRawWithContext(ctx, "pki/crl/pem")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	cfg(map[string]any{"expiry": "72h", "auto_rebuild_grace_period": "12h", "auto_rebuild": true})
	crls, err := pki.DecodeCRLs(buf.Bytes(), pki.MaxCRLPEMSize)
	if err != nil || len(crls) != 1 {
		t.Fatalf("Vault's CRL: %d CRLs, %v", len(crls), err)
	}
	lab.Eventually(t, time.Minute, "Vault's one-second CRL to expire", func(context.Context) error {
		if left := time.Until(crls[0].NextUpdate); left >= 0 {
			return fmt.Errorf("valid for %s more", left)
		}
		return nil
	})
	return buf.Bytes()
}

// tlsLayoutCertificate asks, from the cluster's VaultClusterIssuer, for a
// second intermediate written in the tls layout to its own namespace.
func tlsLayoutCertificate(t *testing.T, e *env, c *lab.Cluster) *cmapi.Certificate {
	t.Helper()
	src, err := mesh.Intermediate(e.ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	const ns = "tls-layout"
	if err := c.EnsureNamespace(e.ctx, ns); err != nil {
		t.Fatal(err)
	}
	crt := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "istio-ca", Annotations: map[string]string{
			syncer.AnnotationOptIn: "true", syncer.AnnotationLayout: "tls"}},
		Spec: *src.Spec.DeepCopy(),
	}
	crt.Spec.SecretName = "istio-ca-tls"
	if err := c.Client.Create(e.ctx, crt); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, waitLimit, "the tls-layout cacerts", func(ctx context.Context) error {
		s := &corev1.Secret{}
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: mesh.CACertsSecret}, s); err != nil {
			return err
		}
		if _, ok := s.Data[pki.CRLKey]; ok {
			return lab.Final(errors.New("the tls layout got a ca-crl.pem"))
		}
		return c.Client.Get(ctx, client.ObjectKeyFromObject(crt), crt)
	})
	return crt
}
