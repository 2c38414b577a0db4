"""Evaluation metrics from one feature pass per image set: Fréchet distance, KID,
precision/recall, density/coverage, Inception Score, intra-class FID, bootstrap intervals,
per-class accuracy of conditional samples, and L1/PSNR/SSIM of translations."""
