package syncer

import (
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CacheOptions returns the manager cache entries the syncer needs, for main
// to merge into cache.Options.ByObject:
//   - Certificates: all are listed (the opt-in is an annotation, which no
//     server-side selector can filter), but those that do not opt in are cut
//     down to a metadata stub before they enter the cache;
//   - Secrets: only those cert-manager labels controller.cert-manager.io/fao=true.
//
// Both drop managedFields. NOTE: with these entries mgr.GetClient() no longer
// sees other Secrets; code that reads arbitrary Secrets must use
// mgr.GetAPIReader() or its own cache. Secrets named cacerts are watched
// through a second cache that Setup adds.
func CacheOptions(opts Options) map[client.Object]cache.ByObject {
	namespaces := namespaceConfigs(opts.watchedNamespaces())
	return map[client.Object]cache.ByObject{
		&cmapi.Certificate{}: {Transform: transformCertificate, Namespaces: namespaces},
		&corev1.Secret{}: {
			Label:      labels.SelectorFromSet(labels.Set{cmapi.PartOfCertManagerControllerLabelKey: "true"}),
			Transform:  cache.TransformStripManagedFields(),
			Namespaces: namespaces,
		},
	}
}

// namespaceConfigs turns a namespace list into a cache restriction; nil
// means every namespace.
func namespaceConfigs(namespaces []string) map[string]cache.Config {
	if len(namespaces) == 0 {
		return nil
	}
	out := make(map[string]cache.Config, len(namespaces))
	for _, ns := range namespaces {
		out[ns] = cache.Config{}
	}
	return out
}

// targetCacheOptions selects the Secrets named like the default target.
func targetCacheOptions(opts Options) map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&corev1.Secret{}: {
			Field:      fields.OneTermEqualSelector("metadata.name", opts.SecretName),
			Transform:  cache.TransformStripManagedFields(),
			Namespaces: namespaceConfigs(opts.targetCacheNamespaces()),
		},
	}
}

var _ toolscache.TransformFunc = transformCertificate

// transformCertificate keeps opted-in Certificates whole (minus
// managedFields) and reduces all others to identity and annotations, so a
// cluster with thousands of Certificates costs little memory.
func transformCertificate(in any) (any, error) {
	crt, ok := in.(*cmapi.Certificate)
	if !ok {
		return in, nil
	}
	if OptedIn(crt.Annotations) {
		crt.ManagedFields = nil
		return crt, nil
	}
	return &cmapi.Certificate{
		TypeMeta: crt.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name:            crt.Name,
			Namespace:       crt.Namespace,
			UID:             crt.UID,
			ResourceVersion: crt.ResourceVersion,
			Generation:      crt.Generation,
			Annotations:     map[string]string{AnnotationOptIn: crt.Annotations[AnnotationOptIn]},
		},
	}, nil
}
