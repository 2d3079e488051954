package workload

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Peer is one side of a mutual TLS connection.
type Peer struct {
	// Cert is the side's workload certificate with its chain.
	Cert tls.Certificate
	// Roots is the side's own cluster's root-cert.pem.
	Roots *x509.CertPool
	// CRLs are the side's own cluster's istio-ca-crl; none checks no
	// revocation, as Envoy without a CRL file.
	CRLs []*x509.RevocationList
	// Expect is the SPIFFE ID the side requires of its peer.
	Expect string
}

// Seen reports the identity each side verified in the other.
type Seen struct {
	// ServerSaw is the client's SPIFFE ID as the server verified it.
	ServerSaw string
	// ClientSaw is the server's SPIFFE ID as the client verified it.
	ClientSaw string
}

// Handshake runs one TLS 1.3 connection over loopback with client
// certificates required, each side verifying the other against its own
// roots and expected identity, and one byte exchanged each way.
func Handshake(ctx context.Context, server, client Peer) (Seen, error) {
	var seen Seen
	now := time.Now()
	serverConf := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{server.Cert},
		ClientAuth:   tls.RequireAnyClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			id, err := Verify(raw, server.Roots, server.CRLs, server.Expect, now)
			seen.ServerSaw = id
			return err
		},
	}
	clientConf := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{client.Cert},
		// SPIFFE certificates carry no DNS name; VerifyPeerCertificate does
		// the whole verification instead, as Envoy's SAN matcher does.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			id, err := Verify(raw, client.Roots, client.CRLs, client.Expect, now)
			seen.ClientSaw = id
			return err
		},
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return seen, fmt.Errorf("listening: %w", err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()

	serverErr := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer conn.Close()
		tc := tls.Server(conn, serverConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			serverErr <- fmt.Errorf("server handshake: %w", err)
			return
		}
		buf := make([]byte, 1)
		if _, err := io.ReadFull(tc, buf); err != nil {
			serverErr <- fmt.Errorf("server read: %w", err)
			return
		}
		_, err = tc.Write(buf)
		serverErr <- err
	}()

	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return seen, fmt.Errorf("dialing: %w", err)
	}
	defer conn.Close()
	tc := tls.Client(conn, clientConf)
	clientErr := tc.HandshakeContext(ctx)
	if clientErr == nil {
		if _, err := tc.Write([]byte{1}); err != nil {
			clientErr = err
		} else if _, err := io.ReadFull(tc, make([]byte, 1)); err != nil {
			clientErr = err
		}
	}
	if clientErr != nil {
		conn.Close() // Unblock the server side.
	}
	sErr := <-serverErr
	if clientErr != nil || sErr != nil {
		return seen, errors.Join(prefix("client", clientErr), prefix("server", sErr))
	}
	if tc.ConnectionState().Version != tls.VersionTLS13 {
		return seen, errors.New("negotiated a TLS version older than 1.3")
	}
	return seen, nil
}

func prefix(side string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", side, err)
}
