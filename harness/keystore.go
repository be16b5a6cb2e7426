package harness

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/agentpass-go/agentpass/dpop"
)

// ErrKeyNotFound: a KeyStore has no key under the reference.
var ErrKeyNotFound = errors.New("harness: holder key not found")

// KeyStore keeps the holder keys of started requests (see [Client.Start]),
// so that a process restarting while a person decides can still prove it
// holds the key the request was bound to. Implementations must be safe for
// concurrent use.
type KeyStore interface {
	// Save stores k and returns a reference to it (a short string with no
	// secret in it).
	Save(ctx context.Context, k *dpop.Key) (ref string, err error)
	// Load returns the key saved under ref, or an error matching
	// ErrKeyNotFound.
	Load(ctx context.Context, ref string) (*dpop.Key, error)
	// Delete removes the key; deleting a missing key is not an error.
	Delete(ctx context.Context, ref string) error
}

// memoryKeyStore is the default KeyStore: keys live as long as the Client.
type memoryKeyStore struct {
	mu   sync.Mutex
	keys map[string]*dpop.Key
}

func (m *memoryKeyStore) Save(_ context.Context, k *dpop.Key) (string, error) {
	if k == nil {
		return "", errors.New("harness: no key")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keys == nil {
		m.keys = map[string]*dpop.Key{}
	}
	if _, ok := m.keys[k.Thumbprint()]; !ok && len(m.keys) >= maxPending {
		return "", ErrTooManyPending
	}
	m.keys[k.Thumbprint()] = k
	return k.Thumbprint(), nil
}

func (m *memoryKeyStore) Load(_ context.Context, ref string) (*dpop.Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k, ok := m.keys[ref]; ok {
		return k, nil
	}
	return nil, ErrKeyNotFound
}

func (m *memoryKeyStore) Delete(_ context.Context, ref string) error {
	m.mu.Lock()
	delete(m.keys, ref)
	m.mu.Unlock()
	return nil
}

// maxKeyFile bounds a key file FileKeyStore reads.
const maxKeyFile = 16 << 10

// FileKeyStore is a KeyStore keeping one file per key in a directory that
// only its owner can read: the directory is 0700 and each file 0600, as a
// holder key proves the Harness's identity for its request.
type FileKeyStore struct {
	dir string
}

// NewFileKeyStore returns a FileKeyStore in dir, creating it (0700) if it
// does not exist. It refuses a directory that others can read or write.
func NewFileKeyStore(dir string) (*FileKeyStore, error) {
	if dir == "" {
		return nil, errors.New("harness: FileKeyStore needs a directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("harness: key directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("harness: key directory: %w", err)
	}
	if !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("harness: key directory %s must be a directory only its owner can access (0700)", dir)
	}
	return &FileKeyStore{dir: dir}, nil
}

// keyFile is the content of a key file.
type keyFile struct {
	Alg   string `json:"alg"`
	KID   string `json:"kid"`
	PKCS8 []byte `json:"pkcs8"`
}

// Save writes k to a new 0600 file named after its thumbprint. Only keys
// held in memory (ECDSA, Ed25519, RSA) can be saved; a KMS key cannot.
func (s *FileKeyStore) Save(_ context.Context, k *dpop.Key) (string, error) {
	if k == nil {
		return "", errors.New("harness: no key")
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.Signer())
	if err != nil {
		return "", fmt.Errorf("harness: the holder key cannot be exported: %w", err)
	}
	b, err := json.Marshal(keyFile{Alg: k.Algorithm(), KID: k.KeyID(), PKCS8: der})
	if err != nil {
		return "", err
	}
	ref := k.Thumbprint()
	f, err := os.CreateTemp(s.dir, ".tmp-*") // created 0600
	if err != nil {
		return "", fmt.Errorf("harness: saving key: %w", err)
	}
	_, werr := f.Write(b)
	if err := errors.Join(werr, f.Chmod(0o600), f.Sync(), f.Close()); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("harness: saving key: %w", err)
	}
	if err := os.Rename(f.Name(), s.path(ref)); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("harness: saving key: %w", err)
	}
	return ref, nil
}

// Load reads the key saved under ref and checks that it is that key.
func (s *FileKeyStore) Load(_ context.Context, ref string) (*dpop.Key, error) {
	if !validRef(ref) {
		return nil, fmt.Errorf("%w: invalid reference", ErrKeyNotFound)
	}
	f, err := os.Open(s.path(ref))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("harness: loading key: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("harness: loading key: %w", err)
	}
	var kf keyFile
	if len(b) > maxKeyFile || json.Unmarshal(b, &kf) != nil {
		return nil, errors.New("harness: key file is invalid")
	}
	priv, err := x509.ParsePKCS8PrivateKey(kf.PKCS8)
	if err != nil {
		return nil, errors.New("harness: key file is invalid")
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, errors.New("harness: key file is invalid")
	}
	k, err := dpop.NewKey(signer, kf.Alg, kf.KID)
	if err != nil {
		return nil, fmt.Errorf("harness: key file is invalid: %w", err)
	}
	if k.Thumbprint() != ref {
		return nil, errors.New("harness: key file holds another key")
	}
	return k, nil
}

// Delete removes the key file of ref.
func (s *FileKeyStore) Delete(_ context.Context, ref string) error {
	if !validRef(ref) {
		return nil
	}
	if err := os.Remove(s.path(ref)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("harness: deleting key: %w", err)
	}
	return nil
}

func (s *FileKeyStore) path(ref string) string { return filepath.Join(s.dir, ref+".key") }

// validRef accepts a thumbprint (base64url, 43 characters for SHA-256), so
// a reference read from a file can never name a path elsewhere.
func validRef(ref string) bool {
	if len(ref) == 0 || len(ref) > 86 {
		return false
	}
	for _, c := range ref {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
