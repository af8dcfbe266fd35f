// Package kubernetes holds the Kubernetes manifests of Runbox and a test
// that checks them without a cluster. The test parses every file and
// checks that each object has a known kind and a name. It also checks
// that the objects refer to each other consistently: selectors, ports,
// volumes, scale targets and the engine socket. It does not check them
// against the Kubernetes API schemas, and nothing here applies them.
package kubernetes

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// object is the part of a Kubernetes object that the checks read.
type object struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   metadata `yaml:"metadata"`
	Spec       spec     `yaml:"spec"`
	// file is the manifest the object came from.
	file string
}

type metadata struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

// spec holds the fields of the kinds used here; each kind fills its own.
type spec struct {
	// Deployment and StatefulSet.
	ServiceName string        `yaml:"serviceName"`
	Selector    labelSelector `yaml:"selector"`
	Template    struct {
		Metadata metadata `yaml:"metadata"`
		Spec     podSpec  `yaml:"spec"`
	} `yaml:"template"`
	VolumeClaimTemplates []struct {
		Metadata metadata `yaml:"metadata"`
	} `yaml:"volumeClaimTemplates"`

	// Service. Its selector is a plain label map, which loadManifests
	// decodes into manifests.selectors.
	ClusterIP string        `yaml:"clusterIP"`
	Ports     []servicePort `yaml:"ports"`

	// ScaledObject and HorizontalPodAutoscaler.
	ScaleTargetRef struct {
		Kind string `yaml:"kind"`
		Name string `yaml:"name"`
	} `yaml:"scaleTargetRef"`

	// NetworkPolicy.
	PodSelector labelSelector `yaml:"podSelector"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type servicePort struct {
	Name       string `yaml:"name"`
	Port       int    `yaml:"port"`
	TargetPort any    `yaml:"targetPort"`
}

type podSpec struct {
	SecurityContext struct {
		RunAsGroup *int `yaml:"runAsGroup"`
	} `yaml:"securityContext"`
	InitContainers []container `yaml:"initContainers"`
	Containers     []container `yaml:"containers"`
	Volumes        []struct {
		Name string `yaml:"name"`
	} `yaml:"volumes"`
}

type container struct {
	Name          string   `yaml:"name"`
	Image         string   `yaml:"image"`
	Args          []string `yaml:"args"`
	RestartPolicy string   `yaml:"restartPolicy"`
	Env           []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
	SecurityContext struct {
		Privileged   bool `yaml:"privileged"`
		RunAsGroup   *int `yaml:"runAsGroup"`
		RunAsNonRoot bool `yaml:"runAsNonRoot"`
	} `yaml:"securityContext"`
	StartupProbe   *probe `yaml:"startupProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
}

type probe struct {
	HTTPGet *struct {
		Port any `yaml:"port"`
	} `yaml:"httpGet"`
}

func (c container) env(name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// hasPort reports whether the container declares the port given by name
// or number.
func (c container) hasPort(port any) bool {
	for _, p := range c.Ports {
		switch v := port.(type) {
		case string:
			if p.Name == v {
				return true
			}
		case int:
			if p.ContainerPort == v {
				return true
			}
		}
	}
	return false
}

// knownKinds maps each kind the manifests may use to its apiVersion.
var knownKinds = map[string]string{
	"Namespace":               "v1",
	"Service":                 "v1",
	"Deployment":              "apps/v1",
	"StatefulSet":             "apps/v1",
	"NetworkPolicy":           "networking.k8s.io/v1",
	"ScaledObject":            "keda.sh/v1alpha1",
	"HorizontalPodAutoscaler": "autoscaling/v2",
}

// kustomizeImage is an entry of the images list of kustomization.yaml.
type kustomizeImage struct {
	Name string `yaml:"name"`
}

// manifests is every parsed object of the directory, plus the kustomization.
type manifests struct {
	objects       []object
	kustomization struct {
		Namespace string           `yaml:"namespace"`
		Resources []string         `yaml:"resources"`
		Images    []kustomizeImage `yaml:"images"`
	}
	// selectors maps each Service name to the Service's selector.
	selectors map[string]map[string]string
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{selectors: map[string]map[string]string{}}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if path == "kustomization.yaml" {
			return yaml.Unmarshal(data, &m.kustomization)
		}
		decoder := yaml.NewDecoder(bytes.NewReader(data))
		for index := 0; ; index++ {
			var node yaml.Node
			err := decoder.Decode(&node)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Errorf("%s: document %d does not parse: %v", path, index, err)
				break
			}
			var obj object
			if err := node.Decode(&obj); err != nil {
				t.Errorf("%s: document %d has an unexpected shape: %v", path, index, err)
				continue
			}
			obj.file = path
			m.objects = append(m.objects, obj)
			if obj.Kind == "Service" {
				var service struct {
					Spec struct {
						Selector map[string]string `yaml:"selector"`
					} `yaml:"spec"`
				}
				if err := node.Decode(&service); err != nil {
					t.Errorf("%s: Service %s selector: %v", path, obj.Metadata.Name, err)
				}
				m.selectors[obj.Metadata.Name] = service.Spec.Selector
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read manifests: %v", err)
	}
	if len(m.objects) == 0 {
		t.Fatal("no manifests found")
	}
	return m
}

func (m *manifests) ofKind(kind string) []object {
	var out []object
	for _, obj := range m.objects {
		if obj.Kind == kind {
			out = append(out, obj)
		}
	}
	return out
}

func (m *manifests) find(kind, name string) (object, bool) {
	for _, obj := range m.objects {
		if obj.Kind == kind && obj.Metadata.Name == name {
			return obj, true
		}
	}
	return object{}, false
}

// workloads returns the Deployments and StatefulSets.
func (m *manifests) workloads() []object {
	return append(m.ofKind("Deployment"), m.ofKind("StatefulSet")...)
}

// matches reports whether every selector label is among labels.
func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for key, value := range selector {
		if labels[key] != value {
			return false
		}
	}
	return true
}

func allContainers(p podSpec) []container {
	return append(slices.Clone(p.InitContainers), p.Containers...)
}

func TestManifestsHaveKnownKindsAndNames(t *testing.T) {
	m := loadManifests(t)
	seen := map[string]string{}
	for _, obj := range m.objects {
		want, known := knownKinds[obj.Kind]
		if !known {
			t.Errorf("%s: unknown kind %q", obj.file, obj.Kind)
			continue
		}
		if obj.APIVersion != want {
			t.Errorf("%s: %s %s has apiVersion %q, want %q", obj.file, obj.Kind, obj.Metadata.Name, obj.APIVersion, want)
		}
		if obj.Metadata.Name == "" {
			t.Errorf("%s: a %s has no metadata.name", obj.file, obj.Kind)
		}
		if obj.Kind != "Namespace" && obj.Metadata.Labels["app.kubernetes.io/name"] != "runbox" {
			t.Errorf("%s: %s %s lacks the label app.kubernetes.io/name=runbox", obj.file, obj.Kind, obj.Metadata.Name)
		}
		key := obj.Kind + "/" + obj.Metadata.Name
		if other, dup := seen[key]; dup {
			// The KEDA and HPA files both name their object runbox-worker,
			// which passes because their kinds differ.
			t.Errorf("%s and %s both define %s", other, obj.file, key)
		}
		seen[key] = obj.file
	}
}

func TestKustomizationListsBaseManifests(t *testing.T) {
	m := loadManifests(t)
	if m.kustomization.Namespace == "" {
		t.Error("kustomization.yaml sets no namespace")
	}
	if _, ok := m.find("Namespace", m.kustomization.Namespace); !ok {
		t.Errorf("kustomization namespace %q has no Namespace object", m.kustomization.Namespace)
	}
	top, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range top {
		if file != "kustomization.yaml" && !slices.Contains(m.kustomization.Resources, file) {
			t.Errorf("kustomization.yaml does not list %s", file)
		}
	}
	for _, resource := range m.kustomization.Resources {
		if _, err := os.Stat(resource); err != nil {
			t.Errorf("kustomization resource %s: %v", resource, err)
		}
	}
	// Every image the workloads run can be renamed in the kustomization,
	// and each is built from a Dockerfile of this repository.
	dockerfiles := map[string]string{
		"runbox/api":    "../api/Dockerfile",
		"runbox/worker": "../worker/Dockerfile",
		"runbox/redis":  "../support/redis/Dockerfile",
	}
	for _, workload := range m.workloads() {
		for _, c := range allContainers(workload.Spec.Template.Spec) {
			name, _, _ := strings.Cut(c.Image, ":")
			listed := slices.ContainsFunc(m.kustomization.Images, func(i kustomizeImage) bool {
				return i.Name == name
			})
			if !listed {
				t.Errorf("%s: image %s of container %s is missing from kustomization images", workload.file, name, c.Name)
			}
			dockerfile, ok := dockerfiles[name]
			if !ok {
				t.Errorf("%s: container %s runs image %s, which no Dockerfile here builds", workload.file, c.Name, c.Image)
				continue
			}
			if _, err := os.Stat(dockerfile); err != nil {
				t.Errorf("%s: image %s: %v", workload.file, name, err)
			}
		}
	}
}

func TestWorkloadSelectorsMatchTemplates(t *testing.T) {
	m := loadManifests(t)
	for _, workload := range m.workloads() {
		if !matches(workload.Spec.Selector.MatchLabels, workload.Spec.Template.Metadata.Labels) {
			t.Errorf("%s: %s %s selector %v does not match its template labels %v", workload.file, workload.Kind,
				workload.Metadata.Name, workload.Spec.Selector.MatchLabels, workload.Spec.Template.Metadata.Labels)
		}
		for _, other := range m.workloads() {
			if other.Metadata.Name != workload.Metadata.Name &&
				matches(workload.Spec.Selector.MatchLabels, other.Spec.Template.Metadata.Labels) {
				t.Errorf("%s: selector of %s also matches the pods of %s", workload.file, workload.Metadata.Name, other.Metadata.Name)
			}
		}
	}
}

func TestServicesSelectWorkloadPorts(t *testing.T) {
	m := loadManifests(t)
	for _, service := range m.ofKind("Service") {
		selector := m.selectors[service.Metadata.Name]
		var targets []object
		for _, workload := range m.workloads() {
			if matches(selector, workload.Spec.Template.Metadata.Labels) {
				targets = append(targets, workload)
			}
		}
		if len(targets) != 1 {
			t.Errorf("%s: Service %s selector %v matches %d workloads, want 1", service.file, service.Metadata.Name, selector, len(targets))
			continue
		}
		pod := targets[0].Spec.Template.Spec
		for _, port := range service.Spec.Ports {
			target := port.TargetPort
			if target == nil {
				target = port.Port
			}
			if !slices.ContainsFunc(pod.Containers, func(c container) bool { return c.hasPort(target) }) {
				t.Errorf("%s: Service %s port %d targets %v, which no container of %s declares",
					service.file, service.Metadata.Name, port.Port, target, targets[0].Metadata.Name)
			}
		}
	}
	for _, set := range m.ofKind("StatefulSet") {
		service, ok := m.find("Service", set.Spec.ServiceName)
		if !ok {
			t.Errorf("%s: StatefulSet %s names service %q, which does not exist", set.file, set.Metadata.Name, set.Spec.ServiceName)
			continue
		}
		if service.Spec.ClusterIP != "None" {
			t.Errorf("%s: Service %s governs StatefulSet %s but is not headless (clusterIP: None)", service.file, service.Metadata.Name, set.Metadata.Name)
		}
	}
}

func TestPodVolumesAndProbePorts(t *testing.T) {
	m := loadManifests(t)
	for _, workload := range m.workloads() {
		pod := workload.Spec.Template.Spec
		volumes := map[string]bool{}
		for _, v := range pod.Volumes {
			volumes[v.Name] = false
		}
		for _, claim := range workload.Spec.VolumeClaimTemplates {
			volumes[claim.Metadata.Name] = false
		}
		for _, c := range allContainers(pod) {
			for _, mount := range c.VolumeMounts {
				if _, ok := volumes[mount.Name]; !ok {
					t.Errorf("%s: container %s mounts volume %q, which %s does not define", workload.file, c.Name, mount.Name, workload.Metadata.Name)
				}
				volumes[mount.Name] = true
			}
			for _, p := range []*probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
				if p != nil && p.HTTPGet != nil && !c.hasPort(p.HTTPGet.Port) {
					t.Errorf("%s: container %s probes port %v, which it does not declare", workload.file, c.Name, p.HTTPGet.Port)
				}
			}
		}
		for name, used := range volumes {
			if !used {
				t.Errorf("%s: volume %s of %s is mounted by no container", workload.file, name, workload.Metadata.Name)
			}
		}
	}
}

// TestRedisURLsNameService checks that RUNBOX_REDIS_URL points at the
// Redis Service and its port.
func TestRedisURLsNameService(t *testing.T) {
	m := loadManifests(t)
	found := 0
	for _, workload := range m.workloads() {
		for _, c := range allContainers(workload.Spec.Template.Spec) {
			raw, ok := c.env("RUNBOX_REDIS_URL")
			if !ok {
				continue
			}
			found++
			u, err := url.Parse(raw)
			if err != nil {
				t.Errorf("%s: container %s RUNBOX_REDIS_URL %q: %v", workload.file, c.Name, raw, err)
				continue
			}
			service, ok := m.find("Service", u.Hostname())
			if !ok {
				t.Errorf("%s: container %s RUNBOX_REDIS_URL names host %q, which is no Service", workload.file, c.Name, u.Hostname())
				continue
			}
			port, _ := strconv.Atoi(u.Port())
			if !slices.ContainsFunc(service.Spec.Ports, func(p servicePort) bool { return p.Port == port }) {
				t.Errorf("%s: container %s RUNBOX_REDIS_URL port %d is not a port of Service %s", workload.file, c.Name, port, service.Metadata.Name)
			}
		}
	}
	if found < 2 {
		t.Errorf("RUNBOX_REDIS_URL is set in %d containers, want the API's and the worker's", found)
	}
}

// TestWorkerEngineSidecar checks the Docker-in-Docker arrangement: a
// privileged native sidecar runs the engine, and the unprivileged worker
// reaches it through a socket on a shared volume.
func TestWorkerEngineSidecar(t *testing.T) {
	m := loadManifests(t)
	worker, ok := m.find("Deployment", "runbox-worker")
	if !ok {
		t.Fatal("no Deployment runbox-worker")
	}
	pod := worker.Spec.Template.Spec
	if len(pod.InitContainers) != 1 {
		t.Fatalf("worker pod has %d init containers, want 1", len(pod.InitContainers))
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("worker pod has %d containers, want 1", len(pod.Containers))
	}
	engine, runner := pod.InitContainers[0], pod.Containers[0]
	if engine.RestartPolicy != "Always" {
		t.Errorf("engine container restartPolicy = %q, want Always (a native sidecar)", engine.RestartPolicy)
	}
	if engine.StartupProbe == nil {
		t.Error("engine container has no startupProbe, so the worker would start before the images are loaded")
	}
	if !slices.Equal(engine.Args, []string{"engine"}) {
		t.Errorf("engine container args = %v, want [engine]", engine.Args)
	}
	if !engine.SecurityContext.Privileged {
		t.Error("engine container is not privileged")
	}
	if runner.SecurityContext.Privileged {
		t.Error("worker container is privileged, want it unprivileged")
	}
	if !runner.SecurityContext.RunAsNonRoot {
		t.Error("worker container lacks runAsNonRoot: true")
	}

	engineHost, _ := engine.env("DOCKER_HOST")
	workerHost, _ := runner.env("DOCKER_HOST")
	if engineHost == "" {
		t.Fatal("engine container sets no DOCKER_HOST, want a unix socket")
	}
	if engineHost != workerHost {
		t.Fatalf("DOCKER_HOST is %q in the engine and %q in the worker, want the same unix socket", engineHost, workerHost)
	}
	socketDir := filepath.Dir(strings.TrimPrefix(engineHost, "unix://"))
	mountOf := func(c container) string {
		for _, mount := range c.VolumeMounts {
			if mount.MountPath == socketDir {
				return mount.Name
			}
		}
		return ""
	}
	if mountOf(engine) == "" {
		t.Errorf("engine container mounts no volume at the socket directory %s", socketDir)
	} else if mountOf(engine) != mountOf(runner) {
		t.Errorf("socket directory %s is mounted from %q in the engine and %q in the worker, want one shared volume",
			socketDir, mountOf(engine), mountOf(runner))
	}

	group, _ := engine.env("RUNBOX_DOCKER_SOCKET_GROUP")
	runAs := runner.SecurityContext.RunAsGroup
	if runAs == nil {
		runAs = pod.SecurityContext.RunAsGroup
	}
	if runAs == nil {
		t.Fatal("worker container sets no runAsGroup, in its own or the pod's securityContext")
	}
	if group != strconv.Itoa(*runAs) {
		t.Errorf("socket group %q differs from the worker's runAsGroup %d", group, *runAs)
	}
}

func TestAutoscalersTargetWorker(t *testing.T) {
	m := loadManifests(t)
	scalers := append(m.ofKind("ScaledObject"), m.ofKind("HorizontalPodAutoscaler")...)
	if len(scalers) == 0 {
		t.Fatal("no ScaledObject or HorizontalPodAutoscaler")
	}
	for _, scaler := range scalers {
		ref := scaler.Spec.ScaleTargetRef
		if _, ok := m.find(ref.Kind, ref.Name); !ok {
			t.Errorf("%s: %s scales %s %q, which does not exist", scaler.file, scaler.Kind, ref.Kind, ref.Name)
		}
		data, err := os.ReadFile(scaler.file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte("runbox_queue_depth")) {
			t.Errorf("%s: %s does not read the metric runbox_queue_depth", scaler.file, scaler.Kind)
		}
	}
}

func TestNetworkPoliciesSelectPods(t *testing.T) {
	m := loadManifests(t)
	for _, policy := range m.ofKind("NetworkPolicy") {
		selected := slices.ContainsFunc(m.workloads(), func(w object) bool {
			return matches(policy.Spec.PodSelector.MatchLabels, w.Spec.Template.Metadata.Labels)
		})
		if !selected {
			t.Errorf("%s: NetworkPolicy %s selects no workload's pods", policy.file, policy.Metadata.Name)
		}
	}
}
