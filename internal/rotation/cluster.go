package rotation

import (
	"context"
	"errors"
	"fmt"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/internal/crlexchange"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
	"github.com/meshtrust/meshtrust/syncer"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

// What rotate-root writes in a cluster: the VaultClusterIssuer's
// spec.pki.issuerRef, a renewal of the intermediate (as `cmctl renew`
// does), and its record on the Certificate.

// fieldManager names rotate-root's writes in managedFields.
const fieldManager = "meshtrust-rotate-root"

// setIssuerRef points the VaultClusterIssuer at another Vault issuer.
func (m *member) setIssuerRef(ctx context.Context, issuer, ref string) error {
	patch := fmt.Sprintf(`{"spec":{"pki":{"issuerRef":%q}}}`, ref)
	vci := &v1alpha1.VaultClusterIssuer{}
	vci.Name = issuer
	if err := m.crc.Patch(ctx, vci, client.RawPatch(types.MergePatchType, []byte(patch)), client.FieldOwner(fieldManager)); err != nil {
		return fmt.Errorf("setting VaultClusterIssuer %s spec.pki.issuerRef to %s: %w", issuer, ref, err)
	}
	return nil
}

// renew sets the Certificate's Issuing condition, as `cmctl renew` does,
// and returns the revision it had; cert-manager then issues the next one.
func (m *member) renew(ctx context.Context, n Names) (int, error) {
	crt, err := m.certificate(ctx, n)
	if err != nil {
		return 0, err
	}
	rev := revision(crt)
	if apiutil.CertificateHasCondition(crt, cmapi.CertificateCondition{Type: cmapi.CertificateConditionIssuing, Status: cmmeta.ConditionTrue}) {
		// An issuance is already under way (a renewal an earlier run
		// started): wait for it instead of starting another.
		return rev, nil
	}
	apiutil.SetCertificateCondition(crt, crt.Generation, cmapi.CertificateConditionIssuing, cmmeta.ConditionTrue,
		"ManuallyTriggered", "Certificate re-issuance triggered by meshtrust vault rotate-root")
	if err := m.crc.Status().Update(ctx, crt, client.FieldOwner(fieldManager)); err != nil {
		return 0, fmt.Errorf("renewing Certificate %s/%s: %w", n.CertificateNamespace, n.CertificateName, err)
	}
	return rev, nil
}

// issued says whether the Certificate has a Ready revision after rev;
// a pending error while cert-manager is still at it, with its Ready message.
func (m *member) issued(ctx context.Context, n Names, rev int) error {
	crt, err := m.certificate(ctx, n)
	if err != nil {
		return err
	}
	ready := apiutil.GetCertificateCondition(crt, cmapi.CertificateConditionReady)
	switch {
	case revision(crt) <= rev:
		why := "no Ready condition"
		if ready != nil {
			why = fmt.Sprintf("Ready=%s %s: %s", ready.Status, ready.Reason, ready.Message)
		}
		return notYet("Certificate %s/%s still at revision %d (%s)", n.CertificateNamespace, n.CertificateName, rev, why)
	case apiutil.CertificateHasCondition(crt, cmapi.CertificateCondition{Type: cmapi.CertificateConditionIssuing, Status: cmmeta.ConditionTrue}):
		return notYet("Certificate %s/%s still issuing", n.CertificateNamespace, n.CertificateName)
	case ready == nil || ready.Status != cmmeta.ConditionTrue:
		return notYet("Certificate %s/%s revision %d not Ready", n.CertificateNamespace, n.CertificateName, revision(crt))
	}
	return nil
}

// heldForCRL returns the syncer's condition message while it holds the
// Certificate's new intermediate back until its CRL has reached the other
// clusters, "" otherwise.
func (m *member) heldForCRL(ctx context.Context, n Names) (string, error) {
	crt, err := m.certificate(ctx, n)
	if err != nil {
		return "", err
	}
	c := apiutil.GetCertificateCondition(crt, syncer.ConditionCACertsSynced)
	if c == nil || c.Status != cmmeta.ConditionFalse || c.Reason != decision.ReasonWaitingForCRL {
		return "", nil
	}
	return c.Message, nil
}

// crlStatus reads the status of the CRL exchange ConfigMap of the
// cluster's VaultClusterIssuer issuer, wherever its cluster resource
// namespace is; ok is false when there is none: the cluster takes no part
// in the exchange.
func (m *member) crlStatus(ctx context.Context, issuer string) (s crlexchange.Status, ok bool, err error) {
	var list corev1.ConfigMapList
	if err := m.crc.List(ctx, &list, client.MatchingLabels{crlexchange.LabelKey: crlexchange.LabelValue}); err != nil {
		return s, false, fmt.Errorf("listing the CRL exchange ConfigMaps: %w", err)
	}
	for _, cm := range list.Items {
		if cm.Annotations[crlexchange.IssuerAnnotation] != issuer || cm.Data[crlexchange.KeyStatus] == "" {
			continue
		}
		if s, err = crlexchange.DecodeStatus(cm.Data[crlexchange.KeyStatus]); err != nil {
			return s, false, fmt.Errorf("ConfigMap %s/%s: %w", cm.Namespace, cm.Name, err)
		}
		return s, true, nil
	}
	return s, false, nil
}

// pending is a state not reached yet: poll again.
type pending struct{ msg string }

func (p *pending) Error() string { return p.msg }

func notYet(format string, args ...any) error { return &pending{fmt.Sprintf(format, args...)} }

func isPending(err error) bool {
	var p *pending
	return errors.As(err, &p)
}

// writeRecord annotates the Certificate with the rotation's record.
func (m *member) writeRecord(ctx context.Context, n Names, r Record) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, RecordAnnotation, r.encode())
	crt := &cmapi.Certificate{}
	crt.Namespace, crt.Name = n.CertificateNamespace, n.CertificateName
	if err := m.crc.Patch(ctx, crt, client.RawPatch(types.MergePatchType, []byte(patch)), client.FieldOwner(fieldManager)); err != nil {
		return fmt.Errorf("recording phase %s on Certificate %s/%s: %w", r.Phase, n.CertificateNamespace, n.CertificateName, err)
	}
	return nil
}

func revision(crt *cmapi.Certificate) int {
	if crt.Status.Revision == nil {
		return 0
	}
	return *crt.Status.Revision
}
