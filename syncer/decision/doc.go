// Package decision holds the syncer's decisions as small pure checks in
// cert-manager's policy-chain style, each returning a typed verdict that
// keeps the check that gave it:
//   - WriteChain answers "may I write this bundle to cacerts?": the first
//     *Refusal, with its reason, the failed check and its message, or nil;
//   - RotateChain answers "must I trigger a renewal now?": the first
//     *Renewal, or nil;
//   - Warnings lists what a person must fix and no renewal can.
//
// Nothing here talks to the API server or reads a clock.
package decision
