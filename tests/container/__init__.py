"""The container checks (smoke.sh, kube.sh and their clients) and the tests of what the image leaves out."""
