package deploy_test

import (
	"fmt"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// scaledObject is the part of KEDA's ScaledObject the base uses, decoded
// strictly: a misspelt field fails the test as it would fail KEDA.
type scaledObject struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		ScaleTargetRef struct {
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int `json:"minReplicaCount"`
		MaxReplicaCount *int `json:"maxReplicaCount"`
		PollingInterval *int `json:"pollingInterval"`
		CooldownPeriod  *int `json:"cooldownPeriod"`
		Advanced        *struct {
			HorizontalPodAutoscalerConfig *struct {
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior"`
			} `json:"horizontalPodAutoscalerConfig"`
		} `json:"advanced"`
		Triggers []struct {
			Type              string            `json:"type"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef struct {
				Name string `json:"name"`
			} `json:"authenticationRef"`
		} `json:"triggers"`
	} `json:"spec"`
}

// triggerAuthentication is KEDA's TriggerAuthentication, the pod identity
// part.
type triggerAuthentication struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		PodIdentity struct {
			Provider      string `json:"provider"`
			IdentityOwner string `json:"identityOwner"`
			RoleArn       string `json:"roleArn"`
		} `json:"podIdentity"`
	} `json:"spec"`
}

// kubeBase is the kustomize base, each object decoded strictly into its
// type.
type kubeBase struct {
	deployment   *appsv1.Deployment
	services     []corev1.Service
	accounts     []corev1.ServiceAccount
	pdb          *policyv1.PodDisruptionBudget
	scaledObject *scaledObject
	triggerAuth  *triggerAuthentication
	count        int
}

// kustomization is deploy/kubernetes/kustomization.yaml.
type kustomization struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Resources  []string         `json:"resources"`
	Images     []kustomizeImage `json:"images"`
}

// kustomizeImage is one entry of a kustomization's images: what the
// containers' image of that name becomes.
type kustomizeImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName"`
	NewTag  string `json:"newTag"`
	Digest  string `json:"digest"`
}

func loadKustomization(t *testing.T) kustomization {
	t.Helper()
	var k kustomization
	if err := yaml.UnmarshalStrict(readFile(t, "deploy/kubernetes/kustomization.yaml"), &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	return k
}

func loadKubeBase(t *testing.T) kubeBase {
	t.Helper()
	k := loadKustomization(t)
	var b kubeBase
	for _, file := range k.Resources {
		for i, doc := range strings.Split(string(readFile(t, "deploy/kubernetes/"+file)), "\n---\n") {
			var head struct{ Kind string }
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil || head.Kind == "" {
				t.Fatalf("%s document %d: no kind (%v)", file, i+1, err)
			}
			var obj any
			switch head.Kind {
			case "Deployment":
				b.deployment = &appsv1.Deployment{}
				obj = b.deployment
			case "Service":
				b.services = append(b.services, corev1.Service{})
				obj = &b.services[len(b.services)-1]
			case "ServiceAccount":
				b.accounts = append(b.accounts, corev1.ServiceAccount{})
				obj = &b.accounts[len(b.accounts)-1]
			case "PodDisruptionBudget":
				b.pdb = &policyv1.PodDisruptionBudget{}
				obj = b.pdb
			case "ScaledObject":
				b.scaledObject = &scaledObject{}
				obj = b.scaledObject
			case "TriggerAuthentication":
				b.triggerAuth = &triggerAuthentication{}
				obj = b.triggerAuth
			default:
				t.Fatalf("%s: a %s, which this check does not know", file, head.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s: %s: %v", file, head.Kind, err)
			}
			b.count++
		}
	}
	if b.deployment == nil || b.pdb == nil || b.scaledObject == nil || b.triggerAuth == nil || len(b.services) == 0 {
		t.Fatalf("the base lacks a Deployment, PodDisruptionBudget, Service, ScaledObject or TriggerAuthentication")
	}
	return b
}

func container(pod corev1.PodSpec, name string) *corev1.Container {
	for i := range pod.Containers {
		if pod.Containers[i].Name == name {
			return &pod.Containers[i]
		}
	}
	return nil
}

func containerInvocation(c *corev1.Container) invocation {
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	return invocation{where: "deploy/kubernetes/deployment.yaml: container " + c.Name, args: append(append([]string(nil), c.Command...), c.Args...), env: env}
}

// portNumber resolves a probe's or Service's port (a number or a
// container port's name) in the pod.
func portNumber(pod corev1.PodSpec, p intstr.IntOrString) string {
	if p.Type == intstr.Int {
		return itoa(p.IntValue())
	}
	for _, c := range pod.Containers {
		for _, cp := range c.Ports {
			if cp.Name == p.StrVal {
				return itoa(int(cp.ContainerPort))
			}
		}
	}
	return "unknown port " + p.StrVal
}

func preStopSleep(c corev1.Container) time.Duration {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		return 0
	}
	return time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
}

// TestKubernetesBase decodes the kustomize base strictly into the
// Kubernetes API types (KEDA's into local structs) and checks it against
// the binary: the worker container's flags and SQSWORKER_ variables exist,
// its probes and the metrics Service use --metrics-addr's port and the
// binary's /healthz and /readyz, the grace period exceeds preStop plus
// --shutdown-timeout, every container asks for resources and runs
// restricted with a read-only root filesystem, and KEDA scales on the same
// queue, one replica per --concurrency messages, in-flight ones counted.
func TestKubernetesBase(t *testing.T) {
	t.Parallel()
	b := loadKubeBase(t)
	pod := b.deployment.Spec.Template.Spec
	w := container(pod, "worker")
	if w == nil {
		t.Fatal("deployment.yaml has no container named worker")
	}
	inv := containerInvocation(w)
	checkAgainstHelp(t, inv)
	if cmd, _ := inv.subcommand(); cmd != "run" {
		t.Errorf("%s runs `worker %s`, want run", inv.where, cmd)
	}
	port := metricsPort(t, inv)
	for what, probe := range map[string]*corev1.Probe{"/healthz": w.LivenessProbe, "/readyz": w.ReadinessProbe} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != what || portNumber(pod, probe.HTTPGet.Port) != port {
			t.Errorf("%s: want a probe GET %s on port %s (--metrics-addr): %+v", inv.where, what, port, probe)
		}
	}
	if len(w.Ports) == 0 || itoa(int(w.Ports[0].ContainerPort)) != port {
		t.Errorf("%s declares ports %+v, want the metrics port %s", inv.where, w.Ports, port)
	}

	shutdown := durationSetting(t, inv, "shutdown-timeout")
	grace := time.Duration(*b.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if grace <= preStopSleep(*w)+shutdown {
		t.Errorf("terminationGracePeriodSeconds %s, want more than the worker's preStop %s + --shutdown-timeout %s", grace, preStopSleep(*w), shutdown)
	}
	for _, c := range pod.Containers {
		if c.Name != w.Name && preStopSleep(c) <= shutdown {
			t.Errorf("container %s's preStop sleeps %s: it stops before the worker's handlers (--shutdown-timeout %s) are done with it", c.Name, preStopSleep(c), shutdown)
		}
		if grace <= preStopSleep(c) {
			t.Errorf("terminationGracePeriodSeconds %s does not cover container %s's preStop %s", grace, c.Name, preStopSleep(c))
		}
	}
	if !strings.Contains(string(readFile(t, "deploy/kubernetes/deployment.yaml")), fmt.Sprintf("= %ds", int(grace.Seconds()))) {
		t.Errorf("deployment.yaml has no comment working out terminationGracePeriodSeconds (%s)", grace)
	}

	// The worker POSTs to another container of the pod.
	if u, ok := inv.setting("http-url"); ok {
		parsed, err := url.Parse(u)
		served := false
		for _, c := range pod.Containers {
			for _, cp := range c.Ports {
				served = served || (c.Name != w.Name && itoa(int(cp.ContainerPort)) == parsed.Port())
			}
		}
		if err != nil || (parsed.Hostname() != "127.0.0.1" && parsed.Hostname() != "localhost") || !served {
			t.Errorf("%s: --http-url %s is not a port of the app container beside it", inv.where, u)
		}
	}

	podNonRoot := pod.SecurityContext != nil && pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot
	if pod.SecurityContext == nil || pod.SecurityContext.SeccompProfile == nil || pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("the pod's securityContext does not set the RuntimeDefault seccomp profile")
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		restricted := sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation &&
			sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem &&
			sc.Capabilities != nil && slices.Contains(sc.Capabilities.Drop, "ALL") &&
			(podNonRoot || sc.RunAsNonRoot != nil && *sc.RunAsNonRoot)
		if !restricted {
			t.Errorf("container %s is not restricted: want runAsNonRoot, no privilege escalation, all capabilities dropped, a read-only root filesystem", c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("container %s requests no CPU or memory", c.Name)
		}
	}

	podLabels := labels.Set(b.deployment.Spec.Template.Labels)
	if sel, err := metav1.LabelSelectorAsSelector(b.deployment.Spec.Selector); err != nil || !sel.Matches(podLabels) {
		t.Errorf("the Deployment's selector does not match its pods' labels")
	}
	if sel, err := metav1.LabelSelectorAsSelector(b.pdb.Spec.Selector); err != nil || !sel.Matches(podLabels) {
		t.Errorf("the PodDisruptionBudget's selector does not match the pods")
	}
	if b.pdb.Spec.MaxUnavailable == nil && b.pdb.Spec.MinAvailable == nil {
		t.Errorf("the PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
	}
	accountFound := false
	for _, a := range b.accounts {
		accountFound = accountFound || a.Name == pod.ServiceAccountName
	}
	if !accountFound {
		t.Errorf("the pods run as service account %q, which the base does not define", pod.ServiceAccountName)
	}

	scrapes := false
	for _, s := range b.services {
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
			t.Errorf("Service %s selects no pod of the Deployment", s.Name)
		}
		a := s.Annotations
		if a["prometheus.io/scrape"] != "true" {
			continue
		}
		scrapes = true
		if a["prometheus.io/port"] != port || a["prometheus.io/path"] != "/metrics" {
			t.Errorf("Service %s: scrape annotations port %q path %q, want %s and /metrics", s.Name, a["prometheus.io/port"], a["prometheus.io/path"], port)
		}
		for _, sp := range s.Spec.Ports {
			if portNumber(pod, sp.TargetPort) != port {
				t.Errorf("Service %s port %s targets %s, not the metrics port %s", s.Name, sp.Name, portNumber(pod, sp.TargetPort), port)
			}
		}
	}
	if !scrapes {
		t.Errorf("no Service carries the prometheus.io/scrape annotation")
	}

	so, ta := b.scaledObject, b.triggerAuth
	if so.APIVersion != "keda.sh/v1alpha1" || ta.APIVersion != "keda.sh/v1alpha1" {
		t.Errorf("KEDA objects at %s and %s, want keda.sh/v1alpha1", so.APIVersion, ta.APIVersion)
	}
	if so.Spec.ScaleTargetRef.Name != b.deployment.Name {
		t.Errorf("the ScaledObject scales %q, not the Deployment %q", so.Spec.ScaleTargetRef.Name, b.deployment.Name)
	}
	if len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "aws-sqs-queue" {
		t.Fatalf("the ScaledObject's triggers %+v, want one aws-sqs-queue", so.Spec.Triggers)
	}
	tr := so.Spec.Triggers[0]
	queueURL, _ := inv.setting("queue-url")
	if tr.Metadata["queueURL"] != queueURL || tr.Metadata["awsRegion"] != inv.env["AWS_REGION"] {
		t.Errorf("KEDA watches %s in %s; the worker consumes %s in %s", tr.Metadata["queueURL"], tr.Metadata["awsRegion"], queueURL, inv.env["AWS_REGION"])
	}
	if c := intSetting(t, inv, "concurrency"); tr.Metadata["queueLength"] != itoa(c) {
		t.Errorf("queueLength %q, want --concurrency %d: one replica per %d messages", tr.Metadata["queueLength"], c, c)
	}
	if tr.Metadata["scaleOnInFlight"] != "true" {
		t.Errorf("scaleOnInFlight %q, want \"true\": messages being handled are load too", tr.Metadata["scaleOnInFlight"])
	}
	if _, ok := tr.Metadata["activationQueueLength"]; !ok {
		t.Errorf("the trigger has no activationQueueLength")
	}
	if tr.AuthenticationRef.Name != ta.Metadata.Name || ta.Spec.PodIdentity.Provider != "aws" {
		t.Errorf("the trigger authenticates with %q; want the TriggerAuthentication %q with pod identity provider aws (it has %q)",
			tr.AuthenticationRef.Name, ta.Metadata.Name, ta.Spec.PodIdentity.Provider)
	}
	if !strings.Contains(string(readFile(t, "deploy/kubernetes/keda.yaml")), "not which pod") {
		t.Errorf("keda.yaml does not say what KEDA cannot do: choose which pod a scale-down stops")
	}

	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		out, err := exec.Command(kubectl, "kustomize", root+"/deploy/kubernetes").CombinedOutput()
		if err != nil || strings.Count(string(out), "\nkind: ")+boolInt(strings.HasPrefix(string(out), "kind: ")) != b.count {
			t.Errorf("kubectl kustomize: %v; want %d objects:\n%s", err, b.count, out)
		}
	} else {
		t.Log("kubectl is not on PATH: the base was decoded, not rendered with kubectl kustomize")
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
