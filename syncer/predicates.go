package syncer

import (
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// OptedInPredicate passes Certificates that carry the opt-in annotation, and
// updates where either side does (so opting out is seen too).
func OptedInPredicate() predicate.Predicate {
	return predicate.NewPredicateFuncs(func(o client.Object) bool { return OptedIn(o.GetAnnotations()) })
}
