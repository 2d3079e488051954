package syncer

import (
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

func TestTransformCertificate(t *testing.T) {
	big := cmapi.CertificateSpec{SecretName: "s", DNSNames: make([]string, 100)}
	mf := []metav1.ManagedFieldsEntry{{Manager: "x"}}
	in := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Name: "a", ManagedFields: mf, Annotations: map[string]string{"other": "x"}}, Spec: big}
	out, _ := transformCertificate(in)
	stub := out.(*cmapi.Certificate)
	if stub.Spec.SecretName != "" || len(stub.ManagedFields) != 0 || stub.Name != "a" || stub.Annotations["other"] != "" {
		t.Errorf("not stubbed: %+v", stub)
	}
	in = &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Name: "b", ManagedFields: mf, Annotations: map[string]string{AnnotationOptIn: "true"}}, Spec: big}
	out, _ = transformCertificate(in)
	if kept := out.(*cmapi.Certificate); kept.Spec.SecretName != "s" || len(kept.ManagedFields) != 0 {
		t.Errorf("opted-in Certificate not kept whole: %+v", kept)
	}
}

func TestCacheOptionsSelectCertManagerSecrets(t *testing.T) {
	for obj, by := range CacheOptions(DefaultOptions()) {
		if _, ok := obj.(*corev1.Secret); !ok {
			continue
		}
		if !by.Label.Matches(labels.Set{cmapi.PartOfCertManagerControllerLabelKey: "true"}) || by.Label.Matches(labels.Set{}) {
			t.Errorf("Secret selector %s", by.Label)
		}
		return
	}
	t.Fatal("no Secret entry")
}

func TestAddFlags(t *testing.T) {
	var o Options
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--syncer-target-namespaces=istio-system,mesh", "--syncer-workload-cert-ttl=12h"}); err != nil {
		t.Fatal(err)
	}
	if len(o.TargetNamespaces) != 2 || o.WorkloadCertTTL.Hours() != 12 || o.SecretName != "cacerts" || o.SafetyMargin.Hours() != 1 {
		t.Errorf("options = %+v", o)
	}
	if _, err := (Options{WorkloadCertTTL: -1}).complete(); err == nil {
		t.Error("negative TTL accepted")
	}
}
