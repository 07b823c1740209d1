"""A stand-in for torchvision, for the tests and benchmarks only: the few names timm imports at
module level, so that timm builds its models (pretrained=False) on the CPU build of torch, for
which no torchvision wheel loads. Using anything here beyond that raises."""
