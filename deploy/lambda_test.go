package deploy_test

import (
	"net/url"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// TestKubernetesLambdaExample decodes deploy/kubernetes/lambda strictly
// into a Deployment and checks it against the binary: the worker's
// SQSWORKER_ variables exist, it invokes the function container's port,
// every image names an exact version, and the grace period covers the
// worker's --shutdown-timeout and the function's preStop.
func TestKubernetesLambdaExample(t *testing.T) {
	t.Parallel()
	const file = "deploy/kubernetes/lambda/deployment.yaml"
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(readFile(t, file), &d); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	pod := d.Spec.Template.Spec
	w, fn := container(pod, "worker"), container(pod, "function")
	if w == nil || fn == nil {
		t.Fatalf("%s: want containers worker and function", file)
	}
	for _, c := range pod.Containers {
		checkImage(t, file+": container "+c.Name, c.Image)
	}
	inv := containerInvocation(w)
	inv.where = file + ": container worker"
	checkAgainstHelp(t, inv)
	if h, _ := inv.setting("handler"); h != "lambda" {
		t.Errorf("%s: handler %q, want lambda", inv.where, h)
	}
	endpoint, _ := inv.setting("lambda-endpoint-url")
	u, err := url.Parse(endpoint)
	if err != nil || u.Hostname() != "127.0.0.1" || len(fn.Ports) == 0 || u.Port() != itoa(int(fn.Ports[0].ContainerPort)) {
		t.Errorf("%s: --lambda-endpoint-url %q, want the function container's port on 127.0.0.1 (%+v)", inv.where, endpoint, fn.Ports)
	}
	shutdown := durationSetting(t, inv, "shutdown-timeout")
	grace := *pod.TerminationGracePeriodSeconds
	if int64(shutdown.Seconds()) >= grace || int64(preStopSleep(*fn).Seconds()) >= grace || preStopSleep(*fn) <= shutdown {
		t.Errorf("%s: grace %ds, --shutdown-timeout %s, function preStop %s: want preStop above the timeout, grace above both",
			file, grace, shutdown, preStopSleep(*fn))
	}
}
