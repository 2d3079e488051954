// Package policy holds the syncer's decisions as small pure functions in
// cert-manager's policy-chain style: each check looks at an Input and returns
// (reason, message, failed). WriteChain answers "may I write this bundle to
// cacerts?" (failed means no); RotateChain answers "must I trigger a renewal
// now?" (failed means yes). The reason doubles as the event reason.
//
// Nothing here talks to the API server or reads a clock.
package policy
