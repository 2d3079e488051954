package status

import (
	"context"
	"fmt"
	"time"

	"github.com/meshtrust/meshtrust/internal/crlexchange"
	"github.com/meshtrust/meshtrust/internal/kube"
	"github.com/meshtrust/meshtrust/internal/pki"
)

// Where istiod publishes the CRL of its cacerts (pilot's namespace
// controller, PILOT_CRL_CONFIGMAP's default), in its own namespace as in
// every other.
const (
	IstioCRLConfigMap = "istio-ca-crl"
	IstioCRLKey       = pki.CRLKey
)

// Propagation follows a new CRL of Vault's into one cluster, for `meshtrust
// vault revoke` and `unenroll --revoke`.
type Propagation struct {
	// Context names the cluster.
	Context string
	// Issuers are the VaultClusterIssuers asked to refresh at once.
	Issuers []string
	// Participates is true when the cluster's controllers take part in the
	// CRL exchange (an issuer's exchange ConfigMap has a status); only those
	// are waited for.
	Participates bool
	// InCACerts is true once cacerts' ca-crl.pem carries the CRL;
	// Published once istiod has published it in istio-ca-crl.
	InCACerts, Published bool
	// Detail says what is missing, or why the cluster could not be read.
	Detail string

	clients *kube.Clients
}

// Done reports whether the cluster needs no more waiting for.
func (p *Propagation) Done() bool { return !p.Participates || p.InCACerts && p.Published }

// StartPropagation asks every VaultClusterIssuer of the cluster to refresh
// its CRLs now (crlexchange.RefreshAnnotation set to value) and notes
// whether the cluster takes part in the CRL exchange at all. crlNamespace
// holds the exchange ConfigMaps.
func StartPropagation(ctx context.Context, kc kube.Kubeconfig, contextName, crlNamespace, value string, timeout time.Duration) *Propagation {
	p := &Propagation{Context: contextName}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg, err := kc.RESTConfig(contextName)
	if err == nil {
		p.clients, err = kube.NewClients(cfg)
	}
	if err != nil {
		p.Detail = "unreachable: " + err.Error()
		return p
	}
	if p.Issuers, err = kube.RequestCRLRefresh(ctx, p.clients.Client, crlexchange.RefreshAnnotation, value); err != nil {
		p.Detail = "cannot ask for a refresh: " + err.Error()
		return p
	}
	if len(p.Issuers) == 0 {
		p.Detail = "no VaultClusterIssuer: not a meshtrust cluster"
		return p
	}
	for _, name := range p.Issuers {
		text, err := kube.ReadConfigMapKey(ctx, p.clients.Clientset, crlNamespace, crlexchange.ConfigMapName(crlexchange.KindClusterIssuer, name), crlexchange.KeyStatus)
		if err != nil {
			p.Detail = err.Error()
			return p
		}
		if text != "" {
			p.Participates = true
		}
	}
	if !p.Participates {
		p.Detail = fmt.Sprintf("no CRL exchange in %s: meshtrust's controllers there carry no CRLs", crlNamespace)
	}
	return p
}

// Check reads whether the cluster carries want yet: cacerts' ca-crl.pem and
// istiod's istio-ca-crl in namespace.
func (p *Propagation) Check(ctx context.Context, namespace, secret string, want []IssuedCRL, timeout time.Duration) {
	if !p.Participates || p.clients == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, err := kube.ReadCacerts(ctx, p.clients.Clientset, namespace, secret)
	if err != nil || s == nil {
		p.Detail = fmt.Sprintf("cannot read Secret %s/%s: %v", namespace, secret, err)
		return
	}
	roots, err := pki.DecodeCertificates(s.Data[pki.RootCertKey], pki.MaxRootBundlePEMSize)
	if err != nil {
		p.Detail = fmt.Sprintf("%s: %v", pki.RootCertKey, err)
		return
	}
	var why string
	if p.InCACerts, why = Carries(s.Data[pki.CRLKey], roots, want); !p.InCACerts {
		p.Detail = "cacerts: " + why
		return
	}
	published, err := kube.ReadConfigMapKey(ctx, p.clients.Clientset, namespace, IstioCRLConfigMap, IstioCRLKey)
	if err != nil {
		p.Detail = err.Error()
		return
	}
	if p.Published, why = Carries([]byte(published), roots, want); !p.Published {
		p.Detail = "istiod has not published it in " + IstioCRLConfigMap + " yet: " + why
		return
	}
	p.Detail = ""
}
