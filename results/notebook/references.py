"""The references cell: the data sets, the papers of the models and methods, and the
libraries a notebook's searches used, chosen from their sources and trainables."""

from __future__ import annotations

DATA = {
    "fashion-mnist": "H. Xiao, K. Rasul, R. Vollgraf. *Fashion-MNIST: a Novel Image Dataset for "
                     "Benchmarking Machine Learning Algorithms*. arXiv:1708.07747, 2017.",
    "digits": "E. Alpaydin, C. Kaynak. *Optical Recognition of Handwritten Digits*. UCI Machine "
              "Learning Repository, 1998 (scikit-learn's `load_digits`).",
    "seattle-weather": "Seattle weather 2012-2015, NOAA daily summaries as shipped by the "
                       "`vega_datasets` package (Vega project).",
    "chicago-ridership": "M. Kuhn, K. Johnson. *Feature Engineering and Selection*, CRC Press, "
                         "2019: the Chicago 'L' ridership data (R package `modeldata`).",
    "fine-foods": "J. McAuley, J. Leskovec. *From Amateurs to Connoisseurs: Modeling the "
                  "Evolution of User Expertise through Online Reviews*. WWW 2013 (R package "
                  "`modeldata`'s `small_fine_foods`).",
    "aclimdb": "A. Maas et al. *Learning Word Vectors for Sentiment Analysis*. ACL 2011 "
               "(the IMDB review data set).",
}
VGG = ("K. Simonyan, A. Zisserman. *Very Deep Convolutional Networks for Large-Scale Image "
       "Recognition*. ICLR 2015.")
RESNET = "K. He, X. Zhang, S. Ren, J. Sun. *Deep Residual Learning for Image Recognition*. CVPR 2016."
BN = ("S. Ioffe, C. Szegedy. *Batch Normalization: Accelerating Deep Network Training by "
      "Reducing Internal Covariate Shift*. ICML 2015.")
LSTM = "S. Hochreiter, J. Schmidhuber. *Long Short-Term Memory*. Neural Computation 9(8), 1997."
GRU = ("K. Cho et al. *Learning Phrase Representations using RNN Encoder-Decoder for "
       "Statistical Machine Translation*. EMNLP 2014.")
MODELS = {
    "vgg16": [VGG, BN], "vgg13": [VGG, BN], "vgg_deep": [VGG, BN], "small_vgg": [VGG],
    "cnn3": [BN],
    "resnet18": [RESNET, BN],
    "resnext": [RESNET, "S. Xie, R. Girshick, P. Dollár, Z. Tu, K. He. *Aggregated Residual "
                        "Transformations for Deep Neural Networks*. CVPR 2017."],
    "metric_resnet18": [RESNET, "A. Hermans, L. Beyer, B. Leibe. *In Defense of the Triplet "
                                "Loss for Person Re-Identification*. arXiv:1703.07737, 2017.",
                        "Y. Wen, K. Zhang, Z. Li, Y. Qiao. *A Discriminative Feature Learning "
                        "Approach for Deep Face Recognition* (center loss). ECCV 2016."],
    "autoencoder": ["G. Hinton, R. Salakhutdinov. *Reducing the Dimensionality of Data with "
                    "Neural Networks*. Science 313, 2006."],
    "transfer": ["N. Ma et al. *ShuffleNet V2*. ECCV 2018.", "A. Howard et al. *Searching for "
                 "MobileNetV3*. ICCV 2019.", RESNET],
    "forecaster": [LSTM, GRU],
    "sentiment_lstm": [LSTM],
    "sentiment": [LSTM, GRU, "D. Bahdanau, K. Cho, Y. Bengio. *Neural Machine Translation by "
                             "Jointly Learning to Align and Translate*. ICLR 2015.",
                  "J. Pennington, R. Socher, C. Manning. *GloVe: Global Vectors for Word "
                  "Representation*. EMNLP 2014."],
    "text_baseline": ["C. Manning, P. Raghavan, H. Schütze. *Introduction to Information "
                      "Retrieval*, ch. 13 (Naive Bayes). Cambridge University Press, 2008."],
}
METHODS = [
    "J. Bergstra, R. Bardenet, Y. Bengio, B. Kégl. *Algorithms for Hyper-Parameter "
    "Optimization* (TPE). NeurIPS 2011.",
    "L. Li et al. *A System for Massively Parallel Hyperparameter Tuning* (ASHA). MLSys 2020.",
]
LIBRARIES = [
    "R. Liaw et al. *Tune: A Research Platform for Distributed Model Selection and Training*. "
    "arXiv:1807.05118, 2018 (Ray Tune).",
    "T. Akiba et al. *Optuna: A Next-generation Hyperparameter Optimization Framework*. KDD 2019.",
    "A. Paszke et al. *PyTorch: An Imperative Style, High-Performance Deep Learning Library*. "
    "NeurIPS 2019.",
    "M. Zaharia et al. *Accelerating the Machine Learning Lifecycle with MLflow*. IEEE Data "
    "Engineering Bulletin 41(4), 2018.",
    "F. Pedregosa et al. *Scikit-learn: Machine Learning in Python*. JMLR 12, 2011.",
    "torchinfo (model summaries), matplotlib, pandas, nbformat and nbclient (this notebook).",
]


def references_markdown(searches) -> str:
    """The references of the searches' data sources and trainables, then the methods and
    libraries every search uses (Markdown lists)."""
    data, models = [], []
    for s in searches:
        source = str(s.meta["spec"]["data"]["source"]).split(":", 1)[0]
        data.append(DATA.get(source, f"The user's own data: `{s.meta['spec']['data']['source']}`."))
        models += MODELS.get(s.meta["spec"]["trainable"], [])
    parts = [("Data", data), ("Models", models), ("Search methods", METHODS),
             ("Libraries", LIBRARIES)]
    return "\n\n".join(f"**{title}**\n\n" + "\n".join(f"- {r}" for r in dict.fromkeys(refs))
                       for title, refs in parts if refs)
