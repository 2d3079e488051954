// Package istio is Istio's side of the lab: the names istiod and its
// agents agree on, the lines istiod logs about a changed cacerts, and an
// agent that gets workload certificates from istiod's CA as the Istio agent
// (pilot-agent) does for its pod.
//
// It lives under e2e/ on purpose: it is test equipment, never part of the
// product binaries. It imports only istio.io/api (the generated
// IstioCertificateService client), not istio.io/istio, whose requirements
// would move modules cert-manager v1.20.3 is built against (gateway-api
// v1.5 -> v1.6, cel-go, structured-merge-diff) in meshtrust's own go.mod.
package istio

// Where Istio keeps its control plane and what it calls things there.
const (
	// Namespace is istiod's namespace, which holds cacerts and the mesh
	// ConfigMap.
	Namespace = "istio-system"
	// CACertsSecret is Istio's plugged-in CA Secret in Namespace.
	CACertsSecret = "cacerts"
	// MeshConfigMap is the ConfigMap in Namespace that holds the mesh
	// config (key "mesh") and mesh networks (key "meshNetworks").
	MeshConfigMap = "istio"
	// RootCertConfigMap is the ConfigMap istiod publishes in every namespace
	// with its trust bundle under RootCertKey; agents verify istiod and
	// workloads their peers with it.
	RootCertConfigMap = "istio-ca-root-cert"
	// CRLConfigMap is the ConfigMap istiod publishes in every namespace with
	// the ca-crl.pem of its cacerts, when cacerts has one.
	CRLConfigMap = "istio-ca-crl"
	// RootCertKey is the key of the bundle in RootCertConfigMap.
	RootCertKey = "root-cert.pem"
	// CRLKey is the key of the CRL in CRLConfigMap, and of the CRL file in
	// cacerts.
	CRLKey = "ca-crl.pem"
	// ServerName is the DNS name in istiod's serving certificate that an
	// agent checks when it dials the CA (its CAEndpointSAN).
	ServerName = "istiod.istio-system.svc"
	// CAAudience is the audience of the ServiceAccount token istiod's CA
	// accepts.
	CAAudience = "istio-ca"
	// ClusterIDMetadata is the gRPC metadata key with which an agent tells
	// istiod which cluster's API server verifies its token.
	ClusterIDMetadata = "ClusterID"
)

// Lines istiod logs about a changed cacerts (handleEvent in
// pilot/pkg/bootstrap/istio_ca.go). Each reaction starts with
// UpdateCACertsLine and ends with ReloadedCACertsLine or one of
// CACertsRefusals.
const (
	UpdateCACertsLine   = "Update Istiod cacerts"
	ReloadedCACertsLine = "Istiod has detected the newly added intermediate CA and updated its key and certs accordingly"
)

// CACertsRefusals returns the lines with which istiod ignores a changed
// cacerts and keeps signing with its current CA.
func CACertsRefusals() []string {
	return []string{
		"unable to determine signing file format",
		"failed reading root-cert.pem",
		"Multi root is disabled, updating new ROOT-CA not supported",
		"Updating new ROOT-CA not supported",
		"Failed to update new Plug-in CA certs",
		"Failed generating plugged-in istiod key cert",
	}
}

// ReloadedCRLLine is what istiod logs once it publishes a changed
// ca-crl.pem.
const ReloadedCRLLine = "Istiod has detected the newly added CRL file and updated its CRL accordingly"

// Lines istiod logs at start-up about the CA it runs.
const (
	// PluggedCALine: cacerts is complete; istiod signs with its
	// intermediate and watches ROOT_CA_DIR.
	PluggedCALine = "Use local CA certificate"
	// SelfSignedCALine: no cacerts; istiod runs its own self-signed CA and
	// does not watch ROOT_CA_DIR.
	SelfSignedCALine = "Use self-signed certificate as the CA certificate"
)
