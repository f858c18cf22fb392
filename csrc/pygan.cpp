// Every pygan operator schema, in one place. Each backend registers its kernels in its own file with
// TORCH_LIBRARY_IMPL(pygan, <key>, m); the Python layer (pygan/ops/*.py) adds fake and autograd implementations.
#include <torch/library.h>

TORCH_LIBRARY(pygan, m) {
  // Batch norm (batch statistics when training, the running ones otherwise) followed by an activation of the table
  // in common/activation.h (negative_slope for a fixed slope; slope, 1 or C values, for a learned one). Functional,
  // so autograd and torch.compile handle it plainly. Returns (out, save_mean, save_invstd), statistics in the
  // accumulation dtype.
  m.def("batch_norm_act(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean, Tensor? running_var, "
        "Tensor? slope, bool training, float eps, str activation, float negative_slope) -> (Tensor, Tensor, Tensor)");
  // running = (1 - momentum) * running + momentum * batch, with the unbiased batch variance
  // (1 / save_invstd^2 - eps) * count / (count - 1): one launch for both buffers.
  m.def("batch_norm_update_stats(Tensor(a!) running_mean, Tensor(b!) running_var, Tensor save_mean, "
        "Tensor save_invstd, float momentum, float eps, int count) -> ()");
  // act(BatchNorm(input)) with given statistics (save_mean, save_invstd as batch_norm_act returned them): the very
  // computation of batch_norm_act's normalize-and-activate pass, so a training forward's output is recomputed
  // bitwise (pygan.recompute_relu_outputs), which a composition of PyTorch ops (other rounding) would not.
  m.def("batch_norm_act_apply(Tensor input, Tensor? weight, Tensor? bias, Tensor save_mean, Tensor save_invstd, "
        "Tensor? slope, str activation, float negative_slope) -> Tensor");
  // Whether backward can recover the normalized input from the output accurately for these parameters (see
  // recoverable_from_output in ops/batch_norm_act/batch_norm_act.cpp). Reads the parameters: a host sync on a GPU.
  m.def("batch_norm_act_recoverable(Tensor? weight, Tensor? bias, Tensor? slope, str activation, "
        "float negative_slope, ScalarType dtype) -> bool");
  // saved is the forward input, or its output when saved_is_output (invertible activations only).
  // Returns (grad_input, grad_weight, grad_bias, grad_slope); grad_slope is empty unless the slope is learned.
  m.def("batch_norm_act_backward(Tensor grad_out, Tensor saved, bool saved_is_output, Tensor? weight, "
        "Tensor? bias, Tensor? slope, Tensor save_mean, Tensor save_invstd, bool training, str activation, "
        "float negative_slope) -> (Tensor, Tensor, Tensor, Tensor)");

  // Instance norm (statistics per sample and channel over the spatial dims, biased variance) followed by an optional
  // residual add and an activation: act(weight[c] * (input - mean_nc) * invstd_nc + bias[c] + residual). Returns (out,
  // save_mean, save_invstd), the statistics (N, C) in the accumulation dtype. Running statistics are the caller's.
  m.def("instance_norm_act(Tensor input, Tensor? weight, Tensor? bias, Tensor? residual, Tensor? slope, float eps, "
        "str activation, float negative_slope) -> (Tensor, Tensor, Tensor)");
  // The same with given (N, C) statistics (evaluation with running statistics; recomputing an output).
  m.def("instance_norm_act_apply(Tensor input, Tensor? weight, Tensor? bias, Tensor? residual, Tensor save_mean, "
        "Tensor save_invstd, Tensor? slope, str activation, float negative_slope) -> Tensor");
  // saved is the forward input, or its output when saved_is_output (invertible activations, no residual); residual
  // (the forward's) is given when act'(z) needs it. training: the statistics were the input's (their gradient
  // terms are included). Returns (grad_input, grad_weight, grad_bias, grad_slope, grad_residual); grad_slope is
  // empty unless the slope is learned, grad_residual (= grad_out * act'(z)) empty unless residual is given.
  m.def("instance_norm_act_backward(Tensor grad_out, Tensor saved, bool saved_is_output, Tensor? residual, "
        "Tensor? weight, Tensor? bias, Tensor? slope, Tensor save_mean, Tensor save_invstd, bool training, "
        "str activation, float negative_slope) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");

  // GAN loss over one tensor of discriminator logits: term (bce | neg_softplus | neg_half_exp | linear | hinge |
  // squared, see pygan/ops/reference.py) with its target, mean or sum. Returns (loss, grad w.r.t. logits scaled
  // as the loss, scores = [mean sigmoid(logits), mean logits]); backward only scales the saved gradient.
  m.def("gan_loss(Tensor logits, str term, float target, bool mean) -> (Tensor, Tensor, Tensor)");

  // act(input + bias[c]): the epilogue of a convolution with BatchNorm folded in (bias / slope may have another
  // floating dtype than input; math in the accumulation dtype). Output in input's dtype and memory format.
  m.def("bias_act(Tensor input, Tensor? bias, Tensor? slope, str activation, float negative_slope) -> Tensor");
  // saved is the forward output when saved_is_output (the derivative follows from it: output_gives_derivative in
  // the table, and no learned slope), else its input. Returns (grad_input, grad_bias, grad_slope); grad_slope is
  // empty unless the slope is learned.
  m.def("bias_act_backward(Tensor grad_out, Tensor saved, bool saved_is_output, Tensor? bias, Tensor? slope, "
        "str activation, float negative_slope) -> (Tensor, Tensor, Tensor)");
}
