"""Dataset classes timm imports at module level; constructing one raises."""


class _Unavailable:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("torchvision stand-in: datasets are not available")


CIFAR10 = CIFAR100 = MNIST = KMNIST = FashionMNIST = ImageFolder = _Unavailable
