package lab

import (
	"context"
	"fmt"
	"sort"
	"strings"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// DescribeCertificate says where a Certificate's issuance stands: its
// revision and conditions, its CertificateRequests and theirs, and the
// namespace's recent events. A test that times out waiting on cert-manager
// prints it, so the failure names the stage that stalled.
func (c *Cluster) DescribeCertificate(ctx context.Context, ns, name string) string {
	var b strings.Builder
	crt := &cmapi.Certificate{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, crt); err != nil {
		return fmt.Sprintf("Certificate %s/%s: %v", ns, name, err)
	}
	rev := "none"
	if crt.Status.Revision != nil {
		rev = fmt.Sprint(*crt.Status.Revision)
	}
	next := "none"
	if crt.Status.NextPrivateKeySecretName != nil {
		next = *crt.Status.NextPrivateKeySecretName
	}
	fmt.Fprintf(&b, "Certificate %s/%s generation %d revision %s nextPrivateKeySecretName %s failedIssuanceAttempts %d lastFailureTime %v\n",
		ns, name, crt.Generation, rev, next, ptr.Deref(crt.Status.FailedIssuanceAttempts, 0), crt.Status.LastFailureTime)
	for _, cond := range crt.Status.Conditions {
		fmt.Fprintf(&b, "  %s=%s %s: %s (%v)\n", cond.Type, cond.Status, cond.Reason, cond.Message, cond.LastTransitionTime)
	}
	var crs cmapi.CertificateRequestList
	if err := c.Client.List(ctx, &crs, client.InNamespace(ns)); err != nil {
		fmt.Fprintf(&b, "CertificateRequests: %v\n", err)
	}
	for _, cr := range crs.Items {
		if !metav1.IsControlledBy(&cr, crt) {
			continue
		}
		fmt.Fprintf(&b, "CertificateRequest %s revision %s created %v\n", cr.Name, cr.Annotations[cmapi.CertificateRequestRevisionAnnotationKey], cr.CreationTimestamp)
		for _, cond := range cr.Status.Conditions {
			fmt.Fprintf(&b, "  %s=%s %s: %s\n", cond.Type, cond.Status, cond.Reason, cond.Message)
		}
	}
	var events corev1.EventList
	if err := c.Client.List(ctx, &events, client.InNamespace(ns)); err != nil {
		fmt.Fprintf(&b, "Events: %v\n", err)
	}
	sort.Slice(events.Items, func(i, j int) bool {
		return events.Items[i].LastTimestamp.Before(&events.Items[j].LastTimestamp)
	})
	for _, e := range events.Items {
		fmt.Fprintf(&b, "Event %v %s/%s %s %s (x%d): %s\n", e.LastTimestamp, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Type, e.Reason, e.Count, e.Message)
	}
	return b.String()
}
