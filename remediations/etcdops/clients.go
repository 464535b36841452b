// Package etcdops holds the etcd operations that remediations share, each careful in the way
// an etcd operator is: find the members and check them before acting, snapshot before
// anything destructive, defragment one member at a time with the leader last, and say for
// every failure whether trying again makes sense.
package etcdops

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/remediator/remediator"
)

// ClusterConfig says how to reach one cluster's etcd.
type ClusterConfig struct {
	Name      string
	Endpoints []string
	CAFile    string
	CertFile  string
	KeyFile   string
}

// tls is the cluster's client TLS configuration, or nil for plain HTTP.
func (cfg ClusterConfig) tls() (*tls.Config, error) {
	if cfg.CAFile == "" && cfg.CertFile == "" {
		return nil, nil
	}
	info := transport.TLSInfo{TrustedCAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile}
	c, err := info.ClientConfig()
	if err != nil {
		return nil, remediator.Errorf(remediator.EINVALID, "cluster %q: etcd TLS: %w", cfg.Name, err)
	}
	return c, nil
}

// Clients keeps one etcd client per configured cluster, made on first use.
type Clients struct {
	mu      sync.Mutex
	configs map[string]ClusterConfig
	clients map[string]*clientv3.Client
}

// NewClients returns the clients of the given clusters; nothing is dialled yet.
func NewClients(clusters []ClusterConfig) *Clients {
	c := &Clients{configs: map[string]ClusterConfig{}, clients: map[string]*clientv3.Client{}}
	for _, cl := range clusters {
		c.configs[cl.Name] = cl
	}
	return c
}

// Get returns the client of a cluster. The client dials lazily, so an etcd that is down
// shows up as errors of the calls made with it, not here.
func (c *Clients) Get(cluster string) (*clientv3.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.clients[cluster]; ok {
		return cl, nil
	}
	cfg, ok := c.configs[cluster]
	if !ok {
		return nil, remediator.Errorf(remediator.ENOTFOUND, "cluster %q is not configured", cluster)
	}
	tlsConfig, err := cfg.tls()
	if err != nil {
		return nil, err
	}
	cl, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		TLS:                  tlsConfig,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, remediator.Errorf(remediator.EUNAVAILABLE, "cluster %q: etcd client: %w", cluster, err)
	}
	c.clients[cluster] = cl
	return cl, nil
}

// Probe says whether the cluster's etcd answers: the first endpoint whose member gives its
// status, or an error naming what each endpoint said. It dials a client of its own and closes
// it, so that a cluster only looked at holds no connection open.
func (c *Clients) Probe(ctx context.Context, cluster string) (endpoint string, err error) {
	c.mu.Lock()
	cfg, ok := c.configs[cluster]
	c.mu.Unlock()
	if !ok {
		return "", remediator.Errorf(remediator.ENOTFOUND, "cluster %q is not configured", cluster)
	}
	tlsConfig, err := cfg.tls()
	if err != nil {
		return "", err
	}
	cl, err := clientv3.New(clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: callTimeout, TLS: tlsConfig, Logger: zap.NewNop()})
	if err != nil {
		return "", remediator.Errorf(remediator.EUNAVAILABLE, "etcd client: %w", err)
	}
	defer cl.Close()
	var failures []string
	for _, ep := range cfg.Endpoints {
		sctx, cancel := context.WithTimeout(ctx, callTimeout)
		_, err := cl.Status(sctx, ep)
		cancel()
		if err == nil {
			return ep, nil
		}
		failures = append(failures, Classify(err, "%s", ep).Error())
	}
	return "", remediator.Errorf(remediator.EUNAVAILABLE, "%s", strings.Join(failures, "; "))
}

// Close closes every client made.
func (c *Clients) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for name, cl := range c.clients {
		if err := cl.Close(); err != nil {
			errs = append(errs, fmt.Errorf("cluster %q: %w", name, err))
		}
	}
	clear(c.clients)
	return errors.Join(errs...)
}
