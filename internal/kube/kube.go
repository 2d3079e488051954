// Package kube is the CLI's access to clusters: kubeconfig contexts and
// their clients, and reading cacerts and opted-in Certificates for status.
package kube

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Kubeconfig selects the kubeconfig files: Path if set (--kubeconfig),
// else the KUBECONFIG list, else ~/.kube/config.
type Kubeconfig struct {
	// Path is the --kubeconfig flag.
	Path string
	// Env is the KUBECONFIG environment variable.
	Env string
	// Home is the home directory, for the default ~/.kube/config.
	Home string
}

func (k Kubeconfig) rules() *clientcmd.ClientConfigLoadingRules {
	r := &clientcmd.ClientConfigLoadingRules{}
	switch {
	case k.Path != "":
		r.ExplicitPath = k.Path
	case k.Env != "":
		r.Precedence = filepath.SplitList(k.Env)
	default:
		r.Precedence = []string{filepath.Join(k.Home, ".kube", "config")}
	}
	return r
}

func (k Kubeconfig) describe() string {
	switch {
	case k.Path != "":
		return k.Path
	case k.Env != "":
		return "KUBECONFIG=" + k.Env
	}
	return filepath.Join(k.Home, ".kube", "config")
}

// Resolve returns the contexts to use: the given ones, each checked to
// exist, or the current context when none is given.
func (k Kubeconfig) Resolve(contexts []string) ([]string, error) {
	raw, err := k.rules().Load()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", k.describe(), err)
	}
	if len(contexts) == 0 {
		if raw.CurrentContext == "" {
			return nil, fmt.Errorf("kubeconfig %s has no current context: pass --context", k.describe())
		}
		contexts = []string{raw.CurrentContext}
	}
	known := make([]string, 0, len(raw.Contexts))
	for name := range raw.Contexts {
		known = append(known, name)
	}
	sort.Strings(known)
	seen := map[string]bool{}
	for _, c := range contexts {
		if _, ok := raw.Contexts[c]; !ok {
			return nil, fmt.Errorf("unknown kube context %q in %s (known: %s)", c, k.describe(), strings.Join(known, ", "))
		}
		if seen[c] {
			return nil, fmt.Errorf("kube context %q given twice", c)
		}
		seen[c] = true
	}
	return contexts, nil
}

// RESTConfig returns the client configuration of one context.
func (k Kubeconfig) RESTConfig(contextName string) (*rest.Config, error) {
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(k.rules(), &clientcmd.ConfigOverrides{CurrentContext: contextName}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kube context %q: %w", contextName, err)
	}
	cfg.Timeout = 20 * time.Second
	return cfg, nil
}

// Clients are what the CLI needs for one cluster.
type Clients struct {
	// Config is the REST configuration.
	Config *rest.Config
	// Clientset talks to core APIs.
	Clientset kubernetes.Interface
	// Client reads cert-manager Certificates.
	Client client.Client
}

// NewClients builds clients for a REST configuration.
func NewClients(cfg *rest.Config) (*Clients, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("clientset for %s: %w", cfg.Host, err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := cmapi.AddToScheme(scheme); err != nil {
		return nil, err
	}
	// A static REST mapper would avoid discovery, but discovery is also how
	// an absent cert-manager shows up, which status reports.
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", cfg.Host, err)
	}
	return &Clients{Config: cfg, Clientset: cs, Client: c}, nil
}

// ReadCacerts returns the Secret, or nil when it does not exist.
func ReadCacerts(ctx context.Context, cs kubernetes.Interface, namespace, name string) (*corev1.Secret, error) {
	s, err := cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s/%s: %w", namespace, name, err)
	}
	return s, nil
}

// ReadConfigMap returns the ConfigMap, or nil when it does not exist.
func ReadConfigMap(ctx context.Context, cs kubernetes.Interface, namespace, name string) (*corev1.ConfigMap, error) {
	cm, err := cs.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", namespace, name, err)
	}
	return cm, nil
}

// OptedInCertificates lists the Certificates carrying annotation=true.
func OptedInCertificates(ctx context.Context, c client.Client, annotation string) ([]cmapi.Certificate, error) {
	var list cmapi.CertificateList
	if err := c.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing cert-manager Certificates: %w", err)
	}
	var out []cmapi.Certificate
	for _, crt := range list.Items {
		if crt.Annotations[annotation] == "true" {
			out = append(out, crt)
		}
	}
	return out, nil
}

// AllContexts lists every context of the kubeconfig, sorted.
func (k Kubeconfig) AllContexts() ([]string, error) {
	raw, err := k.rules().Load()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", k.describe(), err)
	}
	out := make([]string, 0, len(raw.Contexts))
	for name := range raw.Contexts {
		out = append(out, name)
	}
	sort.Strings(out)
	return out, nil
}

// vaultClusterIssuers is meshtrust's cluster-scoped issuer kind, read
// without its Go types: the CLI only annotates it.
var vaultClusterIssuers = schema.GroupVersionKind{Group: "meshtrust.io", Version: "v1alpha1", Kind: "VaultClusterIssuerList"}

// RequestCRLRefresh sets annotation=value on every VaultClusterIssuer of
// the cluster, which makes each refresh its CRLs at once, and returns their
// names. A cluster without meshtrust's CRD has none.
func RequestCRLRefresh(ctx context.Context, c client.Client, annotation, value string) ([]string, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(vaultClusterIssuers)
	if err := c.List(ctx, list); err != nil {
		if meta.IsNoMatchError(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing VaultClusterIssuers: %w", err)
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, annotation, value)
	var names []string
	for i := range list.Items {
		item := &list.Items[i]
		if err := c.Patch(ctx, item, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			return names, fmt.Errorf("annotating VaultClusterIssuer %s: %w", item.GetName(), err)
		}
		names = append(names, item.GetName())
	}
	return names, nil
}

// ReadConfigMapKey returns one key of a ConfigMap, "" when either is absent.
func ReadConfigMapKey(ctx context.Context, cs kubernetes.Interface, namespace, name, key string) (string, error) {
	cm, err := cs.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading ConfigMap %s/%s: %w", namespace, name, err)
	}
	return cm.Data[key], nil
}

// ManagedServiceAccounts lists, in every namespace, the ServiceAccounts
// labelled as meshtrust's (app.kubernetes.io/managed-by=meshtrust) that
// carry annotation: for status, the token reviewers enrol minted a stored
// Vault reviewer token for.
func ManagedServiceAccounts(ctx context.Context, cs kubernetes.Interface, annotation string) ([]corev1.ServiceAccount, error) {
	list, err := cs.CoreV1().ServiceAccounts("").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=meshtrust"})
	if err != nil {
		return nil, fmt.Errorf("listing meshtrust's ServiceAccounts: %w", err)
	}
	var out []corev1.ServiceAccount
	for _, sa := range list.Items {
		if _, ok := sa.Annotations[annotation]; ok {
			out = append(out, sa)
		}
	}
	return out, nil
}
