package lab

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/go-logr/logr"

	cmcontroller "github.com/cert-manager/cert-manager/pkg/controller"
	// The controllers register themselves in cmcontroller.Known() from init,
	// exactly as they do in cert-manager's own controller binary.
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/vault"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	// Issuer implementations used by the issuers controllers for readiness.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/vault"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
)

// DefaultCertManagerControllers returns the cert-manager controllers every
// lab cluster runs: the certificates pipeline, the approver, issuer
// readiness, and the SelfSigned and CA issuers.
func DefaultCertManagerControllers() []string {
	return []string{
		"certificates-trigger",
		"certificates-key-manager",
		"certificates-request-manager",
		"certificates-issuing",
		"certificates-readiness",
		"certificates-revision-manager",
		"certificaterequests-approver",
		"issuers",
		"clusterissuers",
		"certificaterequests-issuer-selfsigned",
		"certificaterequests-issuer-ca",
	}
}

// CertManagerNamespace is the cluster-resource namespace of the in-process
// cert-manager: ClusterIssuers read their Secrets from it.
const CertManagerNamespace = "cert-manager"

// certManager is cert-manager's controller manager, run in-process against
// one cluster. Its wiring follows cert-manager's cmd/controller, whose module
// is not published.
type certManager struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startCertManager(ctx context.Context, log logr.Logger, kubeconfig string, names []string, backoff time.Duration) (*certManager, error) {
	known := cmcontroller.Known()
	for _, n := range names {
		if _, ok := known[n]; !ok {
			available := make([]string, 0, len(known))
			for k := range known {
				available = append(available, k)
			}
			sort.Strings(available)
			return nil, fmt.Errorf("unknown cert-manager controller %q (known: %v)", n, available)
		}
	}

	// The controllers outlive the start-up context; stop() ends them.
	ctx, cancel := context.WithCancel(logf.NewContext(context.WithoutCancel(ctx), log))
	factory, err := cmcontroller.NewContextFactory(ctx, cmcontroller.ContextOptions{
		Kubeconfig:         kubeconfig,
		KubernetesAPIQPS:   1000,
		KubernetesAPIBurst: 2000,
		IssuerOptions: cmcontroller.IssuerOptions{
			ClusterResourceNamespace: CertManagerNamespace,
		},
		CertificateOptions: cmcontroller.CertificateOptions{
			CertificateRequestMinimumBackoffDuration: backoff,
		},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("building cert-manager controller context: %w", err)
	}

	cm := &certManager{cancel: cancel}
	for _, n := range names {
		iface, err := known[n](factory)
		if err != nil {
			cm.stop()
			return nil, fmt.Errorf("constructing cert-manager controller %s: %w", n, err)
		}
		cm.wg.Add(1)
		go func() {
			defer cm.wg.Done()
			if err := iface.Run(5, ctx); err != nil {
				log.Error(err, "cert-manager controller exited", "controller", n)
			}
		}()
	}

	// The informers are shared; start them after every controller has asked
	// for the ones it needs.
	shared, err := factory.Build()
	if err != nil {
		cm.stop()
		return nil, fmt.Errorf("building cert-manager informers: %w", err)
	}
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	shared.SharedInformerFactory.Start(ctx.Done())
	shared.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	return cm, nil
}

func (c *certManager) stop() {
	c.cancel()
	c.wg.Wait()
}
