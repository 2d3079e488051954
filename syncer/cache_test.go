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

func TestCacheNamespaces(t *testing.T) {
	tests := []struct {
		name             string
		watch, targets   []string
		wantWatched      []string
		wantTargetsCache []string
	}{
		{name: "all namespaces by default"},
		{name: "star watches all", watch: []string{"*"}, targets: []string{"mesh"}},
		{name: "watched only", watch: []string{"istio-system"}, wantWatched: []string{"istio-system"}, wantTargetsCache: []string{"istio-system"}},
		{name: "watched plus targets", watch: []string{"istio-system", "b"}, targets: []string{"mesh", "b"},
			wantWatched: []string{"istio-system", "b"}, wantTargetsCache: []string{"b", "istio-system", "mesh"}},
		{name: "any target needs every namespace", watch: []string{"istio-system"}, targets: []string{"*"}, wantWatched: []string{"istio-system"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := DefaultOptions()
			opts.WatchNamespaces, opts.TargetNamespaces = tt.watch, tt.targets
			for obj, by := range CacheOptions(opts) {
				if got := keys(by.Namespaces); !equalSets(got, tt.wantWatched) {
					t.Errorf("%T cached in %v, want %v", obj, got, tt.wantWatched)
				}
			}
			for _, by := range targetCacheOptions(opts) {
				if got := keys(by.Namespaces); !equalSets(got, tt.wantTargetsCache) {
					t.Errorf("cacerts cached in %v, want %v", got, tt.wantTargetsCache)
				}
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func equalSets(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]bool{}
	for _, s := range a {
		seen[s] = true
	}
	for _, s := range b {
		if !seen[s] {
			return false
		}
	}
	return true
}
