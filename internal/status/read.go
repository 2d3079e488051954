package status

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/meshtrust/meshtrust/internal/kube"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

// Read gathers one cluster's Input through its kube context: the cacerts
// Secret namespace/secret, the opted-in Certificates, the reviewer
// ServiceAccounts of stored Vault reviewer tokens and Istio's mesh
// ConfigMap namespace/meshConfigMap ("" for none), within timeout.
// It never fails: whatever goes wrong is recorded in the Input, so one
// unreachable cluster does not hide the others.
func Read(ctx context.Context, kc kube.Kubeconfig, contextName, namespace, secret, meshConfigMap string, timeout time.Duration) Input {
	in := Input{Context: contextName}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg, err := kc.RESTConfig(contextName)
	if err != nil {
		in.Err = err
		return in
	}
	clients, err := kube.NewClients(cfg)
	if err != nil {
		in.Err = err
		return in
	}
	if in.Secret, err = kube.ReadCacerts(ctx, clients.Clientset, namespace, secret); err != nil {
		in.Err = err
		return in
	}
	in.Certificates, err = kube.OptedInCertificates(ctx, clients.Client, vaultcontract.OptInAnnotation)
	if err != nil && !meta.IsNoMatchError(err) {
		in.CertificatesErr = err
	}
	in.Reviewers, in.ReviewersErr = kube.ManagedServiceAccounts(ctx, clients.Clientset, vaultcontract.ReviewerTokenExpiresAnnotation)
	if meshConfigMap != "" {
		in.MeshSource = namespace + "/" + meshConfigMap
		in.Mesh, in.MeshErr = kube.ReadConfigMap(ctx, clients.Clientset, namespace, meshConfigMap)
	}
	return in
}
