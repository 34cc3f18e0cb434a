package deploy_test

import (
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"
)

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	dir, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	p, err := loader.LoadWithContext(t.Context(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "docker-compose.yml")}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("sqsworker", true) })
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return p
}

// runsWorker reports whether a service runs the worker image: the
// Dockerfile's last stage, whose entrypoint is the worker.
func runsWorker(s types.ServiceConfig) bool {
	return s.Build != nil && s.Build.Target == "worker"
}

func composeInvocation(s types.ServiceConfig) invocation {
	args := []string(s.Command)
	if len(args) == 0 {
		args = []string{"run"} // the image's CMD
	}
	env := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	return invocation{where: "docker-compose.yml: service " + s.Name, args: args, env: env}
}

// TestCompose loads docker-compose.yml with the compose parser and checks
// it against the binary: every flag and SQSWORKER_ variable a worker
// service sets exists in its subcommand's help; the replicas serve metrics
// on the port Prometheus scrapes and have a stop grace period above their
// shutdown timeout; the URLs they use name services of the stack; setup
// runs before anything uses the queue; every file mounted exists; and each
// service has a comment saying what it is for.
func TestCompose(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	var prom struct {
		ScrapeConfigs []struct {
			JobName      string `json:"job_name"`
			MetricsPath  string `json:"metrics_path"`
			DNSSDConfigs []struct {
				Names []string `json:"names"`
				Port  int      `json:"port"`
			} `json:"dns_sd_configs"`
		} `json:"scrape_configs"`
		RuleFiles []string `json:"rule_files"`
	}
	if err := yaml.Unmarshal(readFile(t, "deploy/monitoring/prometheus.yml"), &prom); err != nil {
		t.Fatal(err)
	}
	scraped := map[string]int{} // service → port Prometheus scrapes
	for _, sc := range prom.ScrapeConfigs {
		if sc.MetricsPath != "/metrics" {
			t.Errorf("prometheus.yml job %s scrapes %q, want /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				scraped[n] = d.Port
			}
		}
	}

	ran := map[string]bool{} // subcommands the stack runs
	for _, s := range p.Services {
		if !runsWorker(s) {
			continue
		}
		inv := composeInvocation(s)
		checkAgainstHelp(t, inv)
		cmd, _ := inv.subcommand()
		ran[cmd] = true
		for _, name := range []string{"endpoint-url", "http-url"} {
			if v, ok := inv.setting(name); ok {
				u, err := url.Parse(v)
				if _, isService := p.Services[u.Hostname()]; err != nil || !isService {
					t.Errorf("%s: --%s %s names no service of the stack", inv.where, name, v)
				}
			}
		}
		if cmd != "run" {
			continue
		}
		if addr, _ := inv.setting("metrics-addr"); !allInterfaces(addr) {
			t.Errorf("%s: --metrics-addr %q, want \":PORT\" set explicitly: Prometheus scrapes from another container", inv.where, addr)
		}
		port := metricsPort(t, inv)
		if want := scraped[s.Name]; want == 0 || port != itoa(want) {
			t.Errorf("%s serves metrics on port %s; prometheus.yml scrapes it on %d", inv.where, port, want)
		}
		if !slicesContains([]string(s.Expose), port) {
			t.Errorf("%s exposes %v, not its metrics port %s", inv.where, s.Expose, port)
		}
		shutdown := durationSetting(t, inv, "shutdown-timeout")
		if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= shutdown {
			t.Errorf("%s: stop_grace_period %v, want more than --shutdown-timeout %s", inv.where, s.StopGracePeriod, shutdown)
		}
		if s.GetScale() < 2 {
			t.Errorf("%s runs %d replica, want several against one queue", inv.where, s.GetScale())
		}
		if d, ok := s.DependsOn["setup"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s does not wait for setup to complete", inv.where)
		}
	}
	for _, want := range []string{"setup", "run"} {
		if !ran[want] {
			t.Errorf("no service of docker-compose.yml runs `worker %s`", want)
		}
	}
	if d, ok := p.Services["producer"].DependsOn["setup"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("the producer does not wait for setup to complete")
	}
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind && !fileExists(v.Source) {
				t.Errorf("service %s mounts %s, which does not exist", s.Name, v.Source)
			}
		}
	}
	for _, target := range []string{"/etc/prometheus/alerts.yml", "/etc/grafana/provisioning/dashboards/sqsworker.json"} {
		mounted := false
		for _, s := range p.Services {
			for _, v := range s.Volumes {
				mounted = mounted || v.Target == target
			}
		}
		if !mounted {
			t.Errorf("no service mounts %s: the stack would run without its alert rules or dashboard", target)
		}
	}
	if !slicesContains(prom.RuleFiles, "/etc/prometheus/alerts.yml") {
		t.Errorf("prometheus.yml loads %v, not the alert rules", prom.RuleFiles)
	}

	// A comment right above each service says what it is for.
	lines := strings.Split(string(readFile(t, "docker-compose.yml")), "\n")
	service := regexp.MustCompile(`^  ([a-z][a-z0-9-]*):\s*$`)
	for i, l := range lines {
		m := service.FindStringSubmatch(l)
		if m == nil || p.Services[m[1]].Name == "" {
			continue
		}
		if i == 0 || !strings.HasPrefix(strings.TrimSpace(lines[i-1]), "#") {
			t.Errorf("docker-compose.yml: service %s has no comment above it saying what it is for", m[1])
		}
	}
}

// TestComposePublishesOnlyToLoopback: none of the stack's services checks
// who calls it (the SQS server takes any credentials, Prometheus and
// Grafana have no login), so every port it publishes is bound to
// 127.0.0.1, not offered on every interface of the host; Grafana's
// anonymous users only view; Prometheus's HTTP API cannot stop it or
// delete its data.
func TestComposePublishesOnlyToLoopback(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	published := 0
	for _, s := range p.Services {
		for _, port := range s.Ports {
			published++
			if port.HostIP != "127.0.0.1" {
				t.Errorf("service %s publishes port %d on host address %q: want \"127.0.0.1:%s:%d\"",
					s.Name, port.Target, port.HostIP, port.Published, port.Target)
			}
		}
		for _, arg := range s.Command {
			for _, risky := range []string{"--web.enable-lifecycle", "--web.enable-admin-api"} {
				if strings.HasPrefix(arg, risky) {
					t.Errorf("service %s runs with %s: anyone who reaches its port can stop it or change its data", s.Name, arg)
				}
			}
		}
	}
	if published == 0 {
		t.Error("docker-compose.yml publishes no port: the checks above saw nothing")
	}
	g, ok := p.Services["grafana"]
	if !ok {
		t.Fatal("docker-compose.yml has no grafana service")
	}
	if env := g.Environment; env["GF_AUTH_ANONYMOUS_ENABLED"] != nil && *env["GF_AUTH_ANONYMOUS_ENABLED"] == "true" {
		// Unset, the role is Grafana's default, Viewer.
		if role := env["GF_AUTH_ANONYMOUS_ORG_ROLE"]; role != nil && *role != "Viewer" {
			t.Errorf("grafana lets anonymous users in as %s, want Viewer (not Editor or Admin)", *role)
		}
	}
}

// allInterfaces reports whether a listen address ("host:port") takes
// connections on every interface: what a container's port must do to be
// reached from another container or through a published port.
func allInterfaces(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	return err == nil && port != "" && (host == "" || host == "0.0.0.0" || host == "::")
}

func slicesContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
