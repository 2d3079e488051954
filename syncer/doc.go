// Package syncer turns cert-manager Certificates that opt in with the
// annotation meshtrust.io/istio-cacerts: "true" into Istio's plugged-CA
// Secret (cacerts), validated the way istiod validates it, and keeps them
// rotated before they expire.
//
// The reconciler gathers inputs (Certificate, its Secret, the current cacerts),
// asks the pure Compute for a Plan, and applies the Plan: one create or
// update of cacerts with optimistic concurrency, a renewal trigger on the
// Certificate's status (the Issuing condition, as `cmctl renew` sets it), the
// scheduled-rotation record (an annotation on the Certificate), an optional
// rollout restart of istiod, events and metrics. Decisions live in
// syncer/decision as small checks with typed verdicts.
//
// Wiring (see TEAM.md): the manager's cache must include CacheOptions(opts);
// then Setup(ctx, mgr, opts) adds the controller and a small second cache for
// Secrets named cacerts.
package syncer
