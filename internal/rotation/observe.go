package rotation

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/internal/kube"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/vaultadmin"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
	"github.com/meshtrust/meshtrust/syncer"
)

// Cluster is one cluster of the fleet.
type Cluster struct {
	// Context is the kube context, for messages.
	Context string
	// Config reaches the cluster's API server.
	Config *rest.Config
	// WithoutIstiod skips the check of istio-ca-root-cert, for a cluster
	// that runs no istiod yet; its cacerts is still checked.
	WithoutIstiod bool
}

// Names locate the objects enrol's manifests create in each cluster.
type Names struct {
	// CertificateNamespace and CertificateName are the intermediate's
	// cert-manager Certificate; its issuerRef names the VaultClusterIssuer
	// and its meshtrust.io/istio-cacerts-target the cacerts Secret.
	CertificateNamespace, CertificateName string
	// IstioNamespace holds the istio-ca-root-cert ConfigMap istiod
	// publishes.
	IstioNamespace string
}

// DefaultNames are enrol's.
func DefaultNames() Names {
	return Names{CertificateNamespace: "istio-system", CertificateName: "istio-ca", IstioNamespace: "istio-system"}
}

// rootCertConfigMap is what istiod publishes in every namespace, with its
// trust bundle under rootCertKey; crlConfigMap holds its cacerts'
// ca-crl.pem (PILOT_ENABLE_CA_CRL) under pki.CRLKey.
const (
	rootCertConfigMap = "istio-ca-root-cert"
	rootCertKey       = "root-cert.pem"
	crlConfigMap      = "istio-ca-crl"
)

// member is a cluster with its clients.
type member struct {
	Cluster
	cs  kubernetes.Interface
	crc client.Client
	// policy is the name of the cluster's Vault policy, once found.
	policy string
	// facts enrol's policy is rendered from; read from the cluster.
	facts policyFacts
}

type policyFacts struct {
	trustDomain, commonName, mount string
}

func newMember(c Cluster) (*member, error) {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: clientset: %w", c.Context, err)
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, cmapi.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	crc, err := client.New(c.Config, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("cluster %s: client: %w", c.Context, err)
	}
	return &member{Cluster: c, cs: cs, crc: crc}, nil
}

// vaultState is what Observe read from Vault.
type vaultState struct {
	view     VaultView
	from, to *vaultadmin.RootInfo
}

func (f *Fleet) observeVault(ctx context.Context) (*vaultState, error) {
	st := &vaultState{}
	var err error
	if st.from, st.view.FromPresent, err = vaultadmin.ReadRoot(ctx, f.vault, f.o.Mount, f.o.From); err != nil {
		return nil, err
	}
	if st.to, st.view.ToPresent, err = vaultadmin.ReadRoot(ctx, f.vault, f.o.Mount, f.o.To); err != nil {
		return nil, err
	}
	def, err := vaultadmin.DefaultIssuer(ctx, f.vault, f.o.Mount)
	if err != nil {
		return nil, err
	}
	switch {
	case st.from != nil && def == st.from.IssuerID:
		st.view.Default = RefFrom
	case st.to != nil && def == st.to.IssuerID:
		st.view.Default = RefTo
	default:
		st.view.Default = RefOther
	}
	for _, r := range []*vaultadmin.RootInfo{st.from, st.to} {
		if r != nil && !pki.IsSelfSigned(r.Cert) {
			return nil, fmt.Errorf("vault at %s: issuer %s of %s/ is not a root (its certificate is not self-signed)", f.vault.Addr, r.IssuerName, f.o.Mount)
		}
	}
	return st, nil
}

// roots names the two roots. A root no longer in Vault is known by the
// fingerprint the clusters' records kept.
func (f *Fleet) roots(v *vaultState, views []ClusterView) Roots {
	r := Roots{FromName: f.o.From, ToName: f.o.To}
	if v.from != nil {
		r.From = v.from.FingerprintSHA256
	}
	if v.to != nil {
		r.To = v.to.FingerprintSHA256
	}
	for _, c := range views {
		if rec := c.Record; rec != nil && rec.From == r.FromName && rec.To == r.ToName {
			if r.From == "" {
				r.From = rec.FromSHA256
			}
			if r.To == "" {
				r.To = rec.ToSHA256
			}
		}
	}
	return r
}

// observeCluster reads what one cluster shows: its Certificate (and the
// record on it), VaultClusterIssuer, cert-manager's Secret, cacerts, the
// bundle istiod publishes, and its Vault policy. Whatever fails to read is
// the view's Err, which stops the rotation.
func (f *Fleet) observeCluster(ctx context.Context, m *member, v *vaultState) ClusterView {
	view := ClusterView{Context: m.Context, CheckIstiod: !m.WithoutIstiod}
	if err := f.readCluster(ctx, m, v, &view); err != nil {
		view.Err = err
	}
	return view
}

func (f *Fleet) readCluster(ctx context.Context, m *member, v *vaultState, view *ClusterView) error {
	names := f.o.Names
	crt, err := m.certificate(ctx, names)
	if err != nil {
		return err
	}
	if view.Record, err = ParseRecord(crt.Annotations[RecordAnnotation]); err != nil {
		return fmt.Errorf("Certificate %s/%s: %w", crt.Namespace, crt.Name, err)
	}
	settings, err := syncer.ParseSettings(crt, "cacerts")
	if err != nil {
		return fmt.Errorf("Certificate %s/%s: %w", crt.Namespace, crt.Name, err)
	}
	ref := crt.Spec.IssuerRef
	if ref.Kind != "VaultClusterIssuer" || (ref.Group != "" && ref.Group != v1alpha1.GroupVersion.Group) {
		return fmt.Errorf("Certificate %s/%s is issued by %s %q, not a VaultClusterIssuer", crt.Namespace, crt.Name, ref.Kind, ref.Name)
	}
	var vci v1alpha1.VaultClusterIssuer
	if err := m.crc.Get(ctx, client.ObjectKey{Name: ref.Name}, &vci); err != nil {
		return fmt.Errorf("reading VaultClusterIssuer %s: %w", ref.Name, err)
	}
	view.IssuerName = vci.Name
	view.IssuerRef = refOf(vci.Spec.PKI.IssuerRef, v, f.o.From, f.o.To)
	m.facts = policyFacts{mount: vci.Spec.PKI.Mount, commonName: crt.Spec.CommonName}
	if vci.Spec.Intermediate != nil {
		m.facts.trustDomain = vci.Spec.Intermediate.TrustDomain
	}
	if m.facts.mount != f.o.Mount {
		return fmt.Errorf("VaultClusterIssuer %s signs in mount %s/, not %s/", vci.Name, m.facts.mount, f.o.Mount)
	}
	if m.facts.trustDomain == "" {
		return fmt.Errorf("VaultClusterIssuer %s has no spec.intermediate.trustDomain", vci.Name)
	}

	src, err := m.secret(ctx, crt.Namespace, crt.Spec.SecretName)
	if err != nil {
		return err
	}
	if src == nil {
		return fmt.Errorf("Secret %s/%s (the Certificate's) does not exist yet", crt.Namespace, crt.Spec.SecretName)
	}
	candidates := knownRoots(v)
	srcRoots, err := pki.DecodeCertificates(src.Data[pki.CACertBundleKey], pki.MaxRootBundlePEMSize)
	if err != nil {
		return fmt.Errorf("Secret %s/%s %s: %w", src.Namespace, src.Name, pki.CACertBundleKey, err)
	}
	view.SourceRoots = pki.Fingerprints(srcRoots)
	srcChain, err := pki.DecodeCertificates(src.Data[pki.TLSCertKey], pki.MaxChainPEMSize)
	if err != nil {
		return fmt.Errorf("Secret %s/%s %s: %w", src.Namespace, src.Name, pki.TLSCertKey, err)
	}
	view.SourceSigner = signer(srcChain, append(candidates, srcRoots...))

	target := settings.Target
	cacerts, err := m.secret(ctx, target.Namespace, target.Name)
	if err != nil {
		return err
	}
	if cacerts == nil {
		return fmt.Errorf("Secret %s does not exist yet (the syncer writes it)", target)
	}
	rootKey, chainKey := pki.RootCertKey, pki.CertChainKey
	if _, ok := cacerts.Data[pki.RootCertKey]; !ok {
		rootKey, chainKey = pki.CACertBundleKey, pki.TLSCertKey
	}
	bundle, err := pki.DecodeCertificates(cacerts.Data[rootKey], pki.MaxRootBundlePEMSize)
	if err != nil {
		return fmt.Errorf("Secret %s %s: %w", target, rootKey, err)
	}
	view.CACertsRoots = pki.Fingerprints(bundle)
	chain, err := pki.DecodeCertificates(cacerts.Data[chainKey], pki.MaxChainPEMSize)
	if err != nil {
		return fmt.Errorf("Secret %s %s: %w", target, chainKey, err)
	}
	view.ChainRoot = signer(chain, append(candidates, bundle...))
	if view.CACertsCRLs, err = crlCover(cacerts.Data[pki.CRLKey], bundle, f.o.Now()); err != nil {
		return fmt.Errorf("Secret %s %s: %w", target, pki.CRLKey, err)
	}
	if at, err := time.Parse(time.RFC3339, cacerts.Annotations[syncer.AnnotationRootsChangedAt]); err == nil {
		view.GraceEnds = at.Add(settings.RootGrace)
	}

	if view.CheckIstiod {
		// Absent until istiod has published: it trusts nothing we can see,
		// and its proxies check no CRL.
		text, err := kube.ReadConfigMapKey(ctx, m.cs, names.IstioNamespace, rootCertConfigMap, rootCertKey)
		if err != nil {
			return err
		}
		if text != "" {
			published, err := pki.DecodeCertificates([]byte(text), pki.MaxRootBundlePEMSize)
			if err != nil {
				return fmt.Errorf("ConfigMap %s/%s %s: %w", names.IstioNamespace, rootCertConfigMap, rootCertKey, err)
			}
			view.Published = pki.Fingerprints(published)
			if text, err = kube.ReadConfigMapKey(ctx, m.cs, names.IstioNamespace, crlConfigMap, pki.CRLKey); err != nil {
				return err
			}
			if view.PublishedCRLs, err = crlCover([]byte(text), published, f.o.Now()); err != nil {
				return fmt.Errorf("ConfigMap %s/%s %s: %w", names.IstioNamespace, crlConfigMap, pki.CRLKey, err)
			}
		}
	}

	name, text, err := f.policyOf(ctx, m)
	if err != nil {
		return err
	}
	view.Policy = name
	view.PolicyRef = RefOther
	for _, r := range []struct {
		ref  Ref
		name string
	}{{RefFrom, f.o.From}, {RefTo, f.o.To}} {
		if vaultadmin.SamePolicy(text, m.policyFor(name, r.name).HCL()) {
			view.PolicyRef = r.ref
		}
	}
	return nil
}

// refOf maps an issuerRef (a name or an ID) to the root it names.
func refOf(ref string, v *vaultState, from, to string) Ref {
	switch {
	case ref == "":
		return RefOther
	case ref == from || names(v.from, ref):
		return RefFrom
	case ref == to || names(v.to, ref):
		return RefTo
	}
	return RefOther
}

// names reports whether ref is the root's issuer name or ID.
func names(r *vaultadmin.RootInfo, ref string) bool {
	return r != nil && (ref == r.IssuerName || ref == r.IssuerID)
}

// crlCover reads a CRL file: which of roots it holds a CRL of that is
// valid at now. An empty file carries none.
func crlCover(text []byte, roots []*x509.Certificate, now time.Time) (CRLCover, error) {
	if len(bytes.TrimSpace(text)) == 0 {
		return CRLCover{}, nil
	}
	crls, err := pki.DecodeCRLs(text, pki.MaxCRLBundlePEMSize)
	if err != nil {
		return CRLCover{}, err
	}
	c := CRLCover{Carried: len(crls) > 0}
	for _, r := range roots {
		for _, crl := range crls {
			if pki.CheckCRL(crl, r, now, pki.CRLKey) == nil {
				c.Roots = append(c.Roots, pki.Fingerprint(r))
				break
			}
		}
	}
	return c, nil
}

func knownRoots(v *vaultState) []*x509.Certificate {
	var out []*x509.Certificate
	for _, r := range []*vaultadmin.RootInfo{v.from, v.to} {
		if r != nil {
			out = append(out, r.Cert)
		}
	}
	return out
}

// signer is the fingerprint of the root among candidates that signed the
// last certificate of chain below a root, "" when none did.
func signer(chain, candidates []*x509.Certificate) string {
	var last *x509.Certificate
	for _, c := range chain {
		if !pki.IsSelfSigned(c) {
			last = c
		}
	}
	if last == nil {
		return ""
	}
	for _, root := range candidates {
		if last.CheckSignatureFrom(root) == nil {
			return pki.Fingerprint(root)
		}
	}
	return ""
}

// policyOf finds the cluster's policy: the one named meshtrust-<cluster>
// whose text is exactly what enrol writes for the cluster's trust domain
// and common name, under either root. The first run lists the policies;
// later reads go to the one found.
func (f *Fleet) policyOf(ctx context.Context, m *member) (name, text string, err error) {
	if m.policy != "" {
		text, err := vaultadmin.ReadPolicy(ctx, f.vault, m.policy)
		return m.policy, text, err
	}
	if f.policyNames == nil {
		if f.policyNames, err = vaultadmin.ListPolicies(ctx, f.vault); err != nil {
			return "", "", err
		}
	}
	for _, n := range f.policyNames {
		if !strings.HasPrefix(n, vaultcontract.PolicyName("")) {
			continue
		}
		text, err := vaultadmin.ReadPolicy(ctx, f.vault, n)
		if err != nil {
			return "", "", err
		}
		for _, ref := range []string{f.o.From, f.o.To} {
			if vaultadmin.SamePolicy(text, m.policyFor(n, ref).HCL()) {
				m.policy = n
				return n, text, nil
			}
		}
	}
	return "", "", fmt.Errorf("no Vault policy is the one `meshtrust vault enroll` writes for trust domain %s and common name %q under %s or %s: enrol the cluster (or re-enrol it if its policy was edited) before rotating",
		m.facts.trustDomain, m.facts.commonName, f.o.From, f.o.To)
}

// policyFor is enrol's policy for the cluster named by the policy name,
// signing under issuer ref.
func (m *member) policyFor(policyName, ref string) vaultcontract.Policy {
	return vaultcontract.Policy{Cluster: strings.TrimPrefix(policyName, vaultcontract.PolicyName("")), Mount: m.facts.mount,
		IssuerRef: ref, TrustDomain: m.facts.trustDomain, CommonName: m.facts.commonName}
}

func (m *member) certificate(ctx context.Context, n Names) (*cmapi.Certificate, error) {
	var crt cmapi.Certificate
	if err := m.crc.Get(ctx, client.ObjectKey{Namespace: n.CertificateNamespace, Name: n.CertificateName}, &crt); err != nil {
		return nil, fmt.Errorf("reading Certificate %s/%s: %w", n.CertificateNamespace, n.CertificateName, err)
	}
	return &crt, nil
}

// secret reads a Secret; nil when it does not exist.
func (m *member) secret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	s, err := m.cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s/%s: %w", ns, name, err)
	}
	return s, nil
}
