package issuer_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	issuerapi "github.com/cert-manager/issuer-lib/api/v1alpha1"
	"github.com/cert-manager/issuer-lib/controllers"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
	"github.com/meshtrust/meshtrust/issuer"
)

// The zero-work issuer is the benchmark's ceiling: an issuer-lib signer that
// returns a pre-made certificate at once, wired into issuer-lib's
// controllers as meshtrust wires them (5 request workers, ca.crt set,
// meshtrust's event recorder). Whatever it reaches is what this lab's API
// server and issuer-lib allow any issuer; meshtrust's distance from it is
// the cost of Vault and of meshtrust's own code. Its kind lives in an API
// group of its own, so meshtrust's controllers never see its requests.
const (
	zeroGroup = "bench.meshtrust.io"
	zeroKind  = "ZeroIssuer"
	// zeroFieldOwner is the issuer's server-side-apply field manager.
	zeroFieldOwner = "bench-zero-issuer"
	// skipInitLabel on a request makes the zero-work issuer's client hand
	// issuer-lib the request as if its Initializing status apply had
	// already landed, so issuer-lib signs at once: the benchmark's
	// measure of what that apply costs.
	skipInitLabel = zeroGroup + "/skip-initializing"
)

var zeroGV = schema.GroupVersion{Group: zeroGroup, Version: "v1alpha1"}

// zeroIssuer is the zero-work issuer's namespaced kind. It has no settings
// but which pre-made certificate to return.
type zeroIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              zeroIssuerSpec         `json:"spec"`
	Status            issuerapi.IssuerStatus `json:"status,omitzero"`
}

type zeroIssuerSpec struct {
	// Intermediate returns the pre-made intermediate instead of the leaf.
	Intermediate bool `json:"intermediate,omitempty"`
}

func (z *zeroIssuer) GetConditions() []metav1.Condition { return z.Status.Conditions }

func (z *zeroIssuer) GetIssuerTypeIdentifier() string { return "zeroissuers." + zeroGroup }

func (z *zeroIssuer) DeepCopyObject() runtime.Object {
	out := &zeroIssuer{TypeMeta: z.TypeMeta, Spec: z.Spec}
	z.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	z.Status.DeepCopyInto(&out.Status)
	return out
}

type zeroIssuerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []zeroIssuer `json:"items"`
}

func (l *zeroIssuerList) DeepCopyObject() runtime.Object {
	out := &zeroIssuerList{TypeMeta: l.TypeMeta}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	for i := range l.Items {
		out.Items = append(out.Items, *l.Items[i].DeepCopyObject().(*zeroIssuer))
	}
	return out
}

// zeroScheme is the tests' scheme plus CRDs and the zero-work kind.
func zeroScheme() *runtime.Scheme {
	s := newScheme()
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		panic(err)
	}
	s.AddKnownTypeWithName(zeroGV.WithKind(zeroKind), &zeroIssuer{})
	s.AddKnownTypeWithName(zeroGV.WithKind(zeroKind+"List"), &zeroIssuerList{})
	metav1.AddToGroupVersion(s, zeroGV)
	return s
}

// zeroIssuerCRD is the kind's CRD: any spec, issuer-lib's status.
func zeroIssuerCRD() *apiextensionsv1.CustomResourceDefinition {
	open := apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr.To(true)}
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "zeroissuers." + zeroGroup},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: zeroGroup,
			Scope: apiextensionsv1.NamespaceScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "zeroissuers", Singular: "zeroissuer", Kind: zeroKind, ListKind: zeroKind + "List"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: zeroGV.Version, Served: true, Storage: true,
				Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{"spec": open, "status": open},
				}},
			}},
		},
	}
}

// zeroWork is the zero-work issuer running in its own manager beside
// meshtrust's, against the same cluster.
type zeroWork struct {
	client client.Client
	cancel context.CancelFunc
	done   chan error
}

// startZeroIssuer installs the kind and starts the issuer. Its log goes to
// the lab directory.
func (e *env) startZeroIssuer(b *testing.B) *zeroWork {
	b.Helper()
	ctx := context.Background()
	cfg := rest.CopyConfig(e.cluster.Config)
	cfg.QPS, cfg.Burst = 1000, 2000
	c, err := client.New(cfg, client.Options{Scheme: zeroScheme()})
	if err != nil {
		b.Fatal(err)
	}
	crd := zeroIssuerCRD()
	if err := c.Create(ctx, crd); err != nil && !apierrors.IsAlreadyExists(err) {
		b.Fatal(err)
	}
	eventually(b, 30*time.Second, "zero-work issuer CRD established", func() (bool, string) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(crd), crd); err != nil {
			return false, err.Error()
		}
		for _, cond := range crd.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return true, ""
			}
		}
		return false, "not established"
	})

	now := time.Now()
	root := pkitest.New(b, now, pkitest.Spec{CN: "zero-work root"}, nil)
	inter := pkitest.New(b, now, pkitest.Spec{CN: "zero-work intermediate", MaxPathLenZero: true, PermittedURIDomains: []string{trustDomain}}, root)
	leaf := pkitest.New(b, now, pkitest.Spec{CN: "zero-work leaf", NotCA: true}, root)
	bundles := map[bool]signer.PEMBundle{
		false: {ChainPEM: leaf.PEM(), CAPEM: root.PEM()},
		true:  {ChainPEM: inter.PEM(), CAPEM: root.PEM()},
	}

	logFile, err := os.Create(filepath.Join(e.lab.Dir, "zero-issuer.log"))
	if err != nil {
		b.Fatal(err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 zeroScheme(),
		Logger:                 zap.New(zap.WriteTo(logFile), zap.UseDevMode(true)),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		b.Fatal(err)
	}
	workers := controller.Options{MaxConcurrentReconciles: issuer.DefaultOptions().MaxConcurrentReconciles}
	zeroGVK := zeroGV.WithKind(zeroKind)
	cc := &controllers.CombinedController{
		IssuerTypes: []issuerapi.Issuer{&zeroIssuer{}},
		FieldOwner:  zeroFieldOwner,
		// No request ever fails here; the value is meshtrust's default.
		MaxRetryDuration: issuer.DefaultOptions().MaxRetryDuration,
		Check:            func(context.Context, issuerapi.Issuer) error { return nil },
		Sign: func(_ context.Context, _ signer.CertificateRequestObject, iss issuerapi.Issuer) (signer.PEMBundle, error) {
			return bundles[iss.(*zeroIssuer).Spec.Intermediate], nil
		},
		EventRecorder:                  issuer.WithoutIssuedEvents(mgr.GetEventRecorder(zeroFieldOwner)),
		SetCAOnCertificateRequest:      true,
		DisableKubernetesCSRController: true,
		ControllerOptions:              workers,
		// As in issuer.Setup: issuer-lib v0.11.0 gives ControllerOptions to
		// its issuer controllers only.
		PreSetupWithManager: func(_ context.Context, gvk schema.GroupVersionKind, _ ctrl.Manager, bld *builder.Builder) error {
			if gvk != zeroGVK {
				bld.WithOptions(workers)
			}
			return nil
		},
	}
	runCtx, cancel := context.WithCancel(ctx)
	if err := cc.SetupWithManager(runCtx, skipInitManager{Manager: mgr}); err != nil {
		cancel()
		b.Fatal(err)
	}
	z := &zeroWork{client: c, cancel: cancel, done: make(chan error, 1)}
	go func() { z.done <- mgr.Start(runCtx) }()
	return z
}

func (z *zeroWork) stop() {
	z.cancel()
	select {
	case <-z.done:
	case <-time.After(time.Minute):
	}
}

// issuer returns a ref to a new, Ready zero-work issuer, and a function
// that deletes it.
func (z *zeroWork) issuer(b *testing.B, name string, intermediate bool) (cmmeta.IssuerReference, func()) {
	b.Helper()
	zi := &zeroIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: name}, Spec: zeroIssuerSpec{Intermediate: intermediate}}
	if err := z.client.Create(context.Background(), zi); err != nil {
		b.Fatal(err)
	}
	eventually(b, 60*time.Second, fmt.Sprintf("zero-work issuer %s Ready", name), func() (bool, string) {
		if err := z.client.Get(context.Background(), client.ObjectKeyFromObject(zi), zi); err != nil {
			return false, err.Error()
		}
		c := readyCondition(zi.Status.Conditions)
		if c == nil {
			return false, "no Ready condition"
		}
		return c.Status == metav1.ConditionTrue && c.ObservedGeneration == zi.Generation, c.Message
	})
	return cmmeta.IssuerReference{Group: zeroGroup, Kind: zeroKind, Name: name}, func() {
		if err := z.client.Delete(context.Background(), zi); err != nil && !apierrors.IsNotFound(err) {
			b.Error(err)
		}
	}
}

// skipInitManager hands issuer-lib a client that skips its Initializing
// apply for labelled requests.
type skipInitManager struct{ ctrl.Manager }

func (m skipInitManager) GetClient() client.Client { return skipInitClient{m.Manager.GetClient()} }

// skipInitClient reads an approved, labelled CertificateRequest that has no
// Ready condition yet as if it carried issuer-lib's Ready=Unknown
// Initializing condition. issuer-lib (v0.11.0, RequestController
// .reconcileStatusPatch) then skips SetInitializing's apply-and-return and
// signs in the same reconcile; the Issued apply is the request's only
// status write. A denied request is left alone, so issuer-lib still marks
// it Denied.
type skipInitClient struct{ client.Client }

func (c skipInitClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if err := c.Client.Get(ctx, key, obj, opts...); err != nil {
		return err
	}
	cr, ok := obj.(*cmapi.CertificateRequest)
	if !ok || cr.Labels[skipInitLabel] != "true" || !crIs(cr, cmapi.CertificateRequestConditionApproved) ||
		crIs(cr, cmapi.CertificateRequestConditionDenied) || crReady(cr) != nil {
		return nil
	}
	cr.Status.Conditions = append(cr.Status.Conditions, cmapi.CertificateRequestCondition{
		Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionUnknown,
		Reason: issuerapi.CertificateRequestConditionReasonInitializing, LastTransitionTime: ptr.To(metav1.Now()),
	})
	return nil
}

// crIs reports whether the request's condition of type t is True.
func crIs(cr *cmapi.CertificateRequest, t cmapi.CertificateRequestConditionType) bool {
	for _, c := range cr.Status.Conditions {
		if c.Type == t && c.Status == cmmeta.ConditionTrue {
			return true
		}
	}
	return false
}
