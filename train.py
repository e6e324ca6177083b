"""Train, validate or test any GAN of the library: ``python train.py fit --config configs/dcgan_mnist.yaml``."""

from gans.cli import main

if __name__ == "__main__":
    main()
