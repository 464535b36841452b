package agent

import (
	"strconv"
	"strings"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/manifest"
)

// restorer is the tool that restores etcd's data dir from a db file, as the node's etcd needs.
type restorer struct {
	// name is etcdutl or etcdctl, as the step's output says.
	name string
	bin  string
	env  []string
	// why says what the choice was made from.
	why string
}

// restorerFor picks the restore tool for the etcd an image runs: etcdctl (ETCDCTL_API=3) for
// a tag of 3.4 or older, which have no etcdutl (3.5 moved snapshot restore there, 3.6 removed
// it from etcdctl); etcdutl for any other, and where the image says no version (a service, a
// tag such as latest or none).
func (c Config) restorer(image string) restorer {
	major, minor, ok := etcdVersion(image)
	switch {
	case ok && (major < 3 || major == 3 && minor <= 4):
		return restorer{name: "etcdctl", bin: c.Etcdctl, env: []string{"ETCDCTL_API=3"},
			why: "image " + image + " is etcd 3.4 or older, which has no etcdutl"}
	case ok:
		return restorer{name: "etcdutl", bin: c.Etcdutl, why: "image " + image + " is etcd 3.5 or later"}
	case image == "":
		return restorer{name: "etcdutl", bin: c.Etcdutl, why: "etcd's version is unknown here (no image)"}
	}
	return restorer{name: "etcdutl", bin: c.Etcdutl, why: "image " + image + " names no etcd version"}
}

// etcdVersion reads the major and minor version from an image's tag, as kubeadm tags etcd's
// (registry.k8s.io/etcd:3.5.12-0) and others do (quay.io/coreos/etcd:v3.4.3).
func etcdVersion(image string) (major, minor int, ok bool) {
	image, _, _ = strings.Cut(image, "@") // a digest
	i := strings.LastIndex(image, ":")
	if i < 0 || i < strings.LastIndex(image, "/") {
		return 0, 0, false // no tag: the colon, if any, is a registry's port
	}
	tag := strings.TrimPrefix(image[i+1:], "v")
	parts := strings.SplitN(tag, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	m, _, _ := strings.Cut(parts[1], "-") // 3.4-0
	minor, err2 := strconv.Atoi(m)
	return major, minor, err1 == nil && err2 == nil
}

// etcdImage is the image of etcd's static pod as its manifest says now; none for a service.
func (a *Agent) etcdImage() (string, error) {
	_, f, _, err := a.read(remediator.ComponentEtcd)
	if err != nil {
		return "", err
	}
	if pod, ok := f.(*manifest.Pod); ok {
		return pod.Image(), nil
	}
	return "", nil
}
