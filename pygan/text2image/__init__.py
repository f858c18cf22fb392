"""Text-to-image synthesis (Reed et al. 2016: GAN-CLS + GAN-INT): a generator conditioned on a caption's embedding,
a matching-aware discriminator, an offline text encoder pretrained on the captions, the embedded captioned digits
(captions from each image's class and measured attributes, some combinations held out), caption folders, the
trainer, the evaluation and the commands."""

from pygan.text2image.data import CaptionedData, CaptionedImages, caption_folder, captioned_digits, load_captioned
from pygan.text2image.evaluate import evaluate, load_model, read_checkpoint
from pygan.text2image.losses import gan_cls_d_loss, gan_int_g_loss
from pygan.text2image.models import MatchingDiscriminator, TextGenerator
from pygan.text2image.text import Text, TextEncoder, Tokenizer, cached_text_encoder, pretrain
from pygan.text2image.trainer import Text2ImageConfig, Text2ImageTrainer

__all__ = ["CaptionedData", "CaptionedImages", "caption_folder", "captioned_digits", "load_captioned", "evaluate",
           "load_model", "read_checkpoint", "gan_cls_d_loss", "gan_int_g_loss", "MatchingDiscriminator",
           "TextGenerator", "Text", "TextEncoder", "Tokenizer", "cached_text_encoder", "pretrain",
           "Text2ImageConfig", "Text2ImageTrainer"]
