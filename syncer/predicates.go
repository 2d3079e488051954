package syncer

import (
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// OptedInPredicate passes Certificates that carry the opt-in annotation (for
// updates: the new object). Opting out needs no reconcile: cacerts is left
// in place on purpose.
func OptedInPredicate() predicate.Predicate {
	return predicate.NewPredicateFuncs(func(o client.Object) bool { return OptedIn(o.GetAnnotations()) })
}
