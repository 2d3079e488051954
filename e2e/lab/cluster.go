package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	meshtrustv1alpha1 "github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
)

// defaultCertificateRequestBackoff is cert-manager's own default for
// --certificate-request-minimum-backoff-duration.
const defaultCertificateRequestBackoff = time.Hour

// Cluster is one lab Kubernetes cluster: a real kube-apiserver and etcd.
type Cluster struct {
	// Name is the cluster's name; the demo also uses it as trust domain.
	Name string
	// Config authenticates as a cluster administrator (system:masters).
	Config *rest.Config
	// Client is an administrator client whose scheme knows client-go,
	// cert-manager and meshtrust types.
	Client client.Client
	// Clientset is an administrator clientset.
	Clientset kubernetes.Interface
	// Scheme is the scheme of Client.
	Scheme *runtime.Scheme
	// KubeconfigPath is a kubeconfig file for Config, with context Name.
	KubeconfigPath string
	// Host is the API server's URL, https://127.0.0.1:<port>.
	Host string
	// CAData is the PEM CA bundle that verifies the API server.
	CAData []byte
	// LogPath receives the in-process cert-manager's log.
	LogPath string
	// Istiod is the cluster's istiod, nil unless Options.Istiod.
	Istiod *Istiod

	env         *envtest.Environment
	dir         string
	certManager *certManager
	logFile     *os.File
}

const etcdDataDir = "etcd-data"

type clusterSpec struct {
	name        string
	dir         string
	apiServer   string
	etcd        string
	crdDirs     []string
	controllers []string
	backoff     time.Duration
}

func startCluster(ctx context.Context, spec clusterSpec) (*Cluster, error) {
	for _, dir := range []string{filepath.Join(spec.dir, "apiserver"), filepath.Join(spec.dir, etcdDataDir)} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating cluster directory: %w", err)
		}
	}
	apiServer, err := deathSignalWrapper(spec.dir, spec.apiServer)
	if err != nil {
		return nil, err
	}
	etcd, err := deathSignalWrapper(spec.dir, spec.etcd)
	if err != nil {
		return nil, err
	}
	// envtest would put etcd's data and the API server's certificates in
	// directories of its own, which nothing removes when a killed test never
	// reaches Stop. Under the cluster's directory they go with the lab's.
	env := &envtest.Environment{
		CRDDirectoryPaths:     spec.crdDirs,
		ErrorIfCRDPathMissing: true,
		ControlPlane: envtest.ControlPlane{
			APIServer: &envtest.APIServer{Path: apiServer, CertDir: filepath.Join(spec.dir, "apiserver"),
				StartTimeout: 2 * time.Minute, StopTimeout: 30 * time.Second},
			Etcd: &envtest.Etcd{Path: etcd, DataDir: filepath.Join(spec.dir, etcdDataDir),
				StartTimeout: 2 * time.Minute, StopTimeout: 30 * time.Second},
		},
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting cluster %s (kube-apiserver and etcd): %w", spec.name, err)
	}
	c := &Cluster{Name: spec.name, Config: cfg, Host: cfg.Host, CAData: cfg.CAData, env: env, dir: spec.dir}
	if err := c.finishStart(ctx, spec); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) finishStart(ctx context.Context, spec clusterSpec) error {
	c.Scheme = runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(c.Scheme))
	utilruntime.Must(cmapi.AddToScheme(c.Scheme))
	utilruntime.Must(meshtrustv1alpha1.AddToScheme(c.Scheme))
	var err error
	if c.Client, err = client.New(c.Config, client.Options{Scheme: c.Scheme}); err != nil {
		return fmt.Errorf("creating client for cluster %s: %w", c.Name, err)
	}
	if c.Clientset, err = kubernetes.NewForConfig(c.Config); err != nil {
		return fmt.Errorf("creating clientset for cluster %s: %w", c.Name, err)
	}
	c.KubeconfigPath = filepath.Join(spec.dir, "kubeconfig")
	if err := WriteKubeconfig(c.KubeconfigPath, map[string]*rest.Config{c.Name: c.Config}, c.Name); err != nil {
		return err
	}
	if err := c.ensureNamespace(ctx, CertManagerNamespace); err != nil {
		return err
	}
	if len(spec.controllers) == 0 {
		return nil
	}
	c.LogPath = filepath.Join(spec.dir, "cert-manager.log")
	if c.logFile, err = os.Create(c.LogPath); err != nil {
		return fmt.Errorf("creating cert-manager log: %w", err)
	}
	log := newFileLogger(c.logFile).WithValues("cluster", c.Name)
	backoff := spec.backoff
	if backoff == 0 {
		backoff = defaultCertificateRequestBackoff
	}
	if c.certManager, err = startCertManager(ctx, log, c.KubeconfigPath, spec.controllers, backoff); err != nil {
		return fmt.Errorf("starting cert-manager in cluster %s: %w", c.Name, err)
	}
	return nil
}

func (c *Cluster) stop() error {
	var errs []error
	if c.Istiod != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := c.Istiod.stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping istiod in cluster %s: %w", c.Name, err))
		}
		cancel()
	}
	if c.certManager != nil {
		c.certManager.stop()
	}
	if c.logFile != nil {
		c.logFile.Close()
	}
	if err := c.env.Stop(); err != nil {
		return errors.Join(append(errs, fmt.Errorf("stopping cluster %s: %w", c.Name, err))...)
	}
	// etcd's data (over 100 MB, mostly preallocated WAL) says nothing a kept
	// lab directory is kept for; the logs stay.
	if err := os.RemoveAll(filepath.Join(c.dir, etcdDataDir)); err != nil {
		errs = append(errs, fmt.Errorf("removing etcd data of cluster %s: %w", c.Name, err))
	}
	return errors.Join(errs...)
}

func (c *Cluster) ensureNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := c.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s in cluster %s: %w", name, c.Name, err)
	}
	return nil
}

// EnsureNamespace creates the namespace if it does not exist.
func (c *Cluster) EnsureNamespace(ctx context.Context, name string) error {
	return c.ensureNamespace(ctx, name)
}

// ServiceAccountToken mints a token for namespace/name through the
// TokenRequest API, creating the ServiceAccount if needed.
func (c *Cluster) ServiceAccountToken(ctx context.Context, namespace, name string, audiences []string, ttl time.Duration) (string, error) {
	if err := c.ensureNamespace(ctx, namespace); err != nil {
		return "", err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if err := c.Client.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("creating ServiceAccount %s/%s: %w", namespace, name, err)
	}
	seconds := int64(ttl / time.Second)
	tr, err := c.Clientset.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &seconds},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token for ServiceAccount %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}

// VaultReviewer is the ServiceAccount whose token Vault uses to call this
// cluster's TokenReview API.
const VaultReviewer = "vault-token-reviewer"

// ConfigureVaultKubernetesAuth enables (if needed) a kubernetes auth mount
// at mountPath and points it at this cluster: its API server URL, its CA,
// and a reviewer ServiceAccount bound to system:auth-delegator.
func (c *Cluster) ConfigureVaultKubernetesAuth(ctx context.Context, vc *vaultapi.Client, mountPath string) error {
	reviewer, err := c.ServiceAccountToken(ctx, "kube-system", VaultReviewer, nil, 24*time.Hour)
	if err != nil {
		return err
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: VaultReviewer},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "kube-system", Name: VaultReviewer}},
	}
	if err := c.Client.Create(ctx, binding); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("binding %s to system:auth-delegator: %w", VaultReviewer, err)
	}
	mounts, err := vc.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("listing Vault auth mounts: %w", err)
	}
	if _, ok := mounts[mountPath+"/"]; !ok {
		if err := vc.Sys().EnableAuthWithOptionsWithContext(ctx, mountPath, &vaultapi.EnableAuthOptions{Type: "kubernetes"}); err != nil {
			return fmt.Errorf("enabling Vault kubernetes auth at %s: %w", mountPath, err)
		}
	}
	if _, err := vc.Logical().WriteWithContext(ctx, "auth/"+mountPath+"/config", map[string]any{
		"kubernetes_host":      c.Host,
		"kubernetes_ca_cert":   string(c.CAData),
		"token_reviewer_jwt":   reviewer,
		"disable_local_ca_jwt": true,
	}); err != nil {
		return fmt.Errorf("configuring Vault kubernetes auth at %s for cluster %s: %w", mountPath, c.Name, err)
	}
	return nil
}

// WriteKubeconfig writes a kubeconfig with one context per entry of
// configs, named by its key, and current-context set to current.
func WriteKubeconfig(path string, configs map[string]*rest.Config, current string) error {
	kc := clientcmdapi.NewConfig()
	for name, cfg := range configs {
		kc.Clusters[name] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
		kc.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
		kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	}
	kc.CurrentContext = current
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}
