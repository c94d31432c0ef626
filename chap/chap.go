// Package chap owns the at-rest form of the CHAP passwords kept in the
// shared config object (spec 3.3): RSA-OAEP under the gateways' key pair,
// base64-encoded, as upstream writes it. The api package encrypts what clients
// send; the lio side decrypts what it puts into configfs.
//
// It reads key files and nothing else: it must not talk to RADOS, configfs or
// the network. Neither errors nor any other output of this package contain a
// password or a ciphertext.
package chap

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"os"
	"strings"
	"unicode/utf8"
)

// ReadPublicKey loads a PEM RSA public key, PKCS#1 ("RSA PUBLIC KEY") or
// PKIX ("PUBLIC KEY"), the two forms upstream's key files come in.
func ReadPublicKey(path string) (*rsa.PublicKey, error) {
	blk, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	switch blk.Type {
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return k, nil
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		rk, ok := k.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%s: not an RSA key", path)
		}
		return rk, nil
	}
	return nil, fmt.Errorf("%s: unsupported PEM block %q (want an RSA public key)", path, blk.Type)
}

// ReadPrivateKey loads a PEM RSA private key, PKCS#1 or PKCS#8, as
// python-cryptography's load_pem_private_key accepts for upstream.
func ReadPrivateKey(path string) (*rsa.PrivateKey, error) {
	blk, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	switch blk.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return k, nil
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s: not an RSA key", path)
		}
		return rk, nil
	}
	return nil, fmt.Errorf("%s: unsupported PEM block %q (want an unencrypted RSA private key)", path, blk.Type)
}

func readPEM(path string) (*pem.Block, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err // *PathError names the file
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	return blk, nil
}

// Encrypt gives the stored form of a password: base64 of RSA-OAEP with
// SHA-256, what upstream 3.x writes.
func Encrypt(pub *rsa.PublicKey, plain string) (string, error) {
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, []byte(plain), nil)
	if err != nil {
		return "", fmt.Errorf("encrypt CHAP password: %w", err)
	}
	return base64.StdEncoding.EncodeToString(ct), nil
}

// Decrypt undoes Encrypt, and also accepts the SHA-1 OAEP of passwords
// written by python-crypto, which upstream falls back to.
func Decrypt(key *rsa.PrivateKey, stored string) (string, error) {
	// Python's b64decode skips characters outside the alphabet, such as the
	// line breaks of wrapped output.
	clean := strings.Map(func(r rune) rune {
		if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
			return -1
		}
		return r
	}, stored)
	ct, err := base64.StdEncoding.DecodeString(clean)
	if err != nil {
		return "", errors.New("stored encrypted, but not valid base64")
	}
	var plain []byte
	for _, h := range []func() hash.Hash{sha256.New, sha1.New} {
		if plain, err = rsa.DecryptOAEP(h(), nil, key, ct, nil); err == nil {
			break
		}
	}
	if err != nil {
		return "", errors.New("stored encrypted, but it does not decrypt with this gateway's private key (RSA-OAEP SHA-256 or SHA-1)")
	}
	if !utf8.Valid(plain) {
		return "", errors.New("decrypted value is not UTF-8")
	}
	return string(plain), nil
}
