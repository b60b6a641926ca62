"""The deeplearning.ai "Residual Networks" assignment's ``identity_block``, ``convolutional_block`` and
``ResNet50`` as the assignment writes them (Keras 2 era code), and the mini ResNet of the golden
fixtures (its stem, one convolutional and one identity block), written once for the two sides that run
them: the golden generator on real Keras (``make_golden_graph.py``) and the tests on kandle
(``tests/test_graph_golden.py``). ``build(K)`` binds the assignment's names to a Keras-API module
(``keras`` or ``kandle``) and returns its functions.
"""

from types import SimpleNamespace


def build(K):
    Input = K.layers.Input
    ZeroPadding2D = K.layers.ZeroPadding2D
    Conv2D = K.layers.Conv2D
    BatchNormalization = K.layers.BatchNormalization
    Activation = K.layers.Activation
    MaxPooling2D = K.layers.MaxPooling2D
    AveragePooling2D = K.layers.AveragePooling2D
    Flatten = K.layers.Flatten
    Dense = K.layers.Dense
    Add = K.layers.Add
    Model = K.models.Model
    glorot_uniform = K.initializers.glorot_uniform

    def identity_block(X, f, filters, stage, block):
        """Implementation of the identity block as defined in Figure 3

        X -- input tensor of shape (m, n_H_prev, n_W_prev, n_C_prev)
        f -- integer, shape of the middle CONV's window for the main path
        filters -- python list of integers, the number of filters in the CONV layers of the main path
        stage -- integer, used to name the layers, depending on their position in the network
        block -- string/character, used to name the layers, depending on their position in the network
        """
        conv_name_base = 'res' + str(stage) + block + '_branch'
        bn_name_base = 'bn' + str(stage) + block + '_branch'
        F1, F2, F3 = filters
        X_shortcut = X

        X = Conv2D(filters=F1, kernel_size=(1, 1), strides=(1, 1), padding='valid',
                   name=conv_name_base + '2a', kernel_initializer=glorot_uniform(seed=0))(X)
        X = BatchNormalization(axis=3, name=bn_name_base + '2a')(X)
        X = Activation('relu')(X)

        X = Conv2D(filters=F2, kernel_size=(f, f), strides=(1, 1), padding='same',
                   name=conv_name_base + '2b', kernel_initializer=glorot_uniform(seed=0))(X)
        X = BatchNormalization(axis=3, name=bn_name_base + '2b')(X)
        X = Activation('relu')(X)

        X = Conv2D(filters=F3, kernel_size=(1, 1), strides=(1, 1), padding='valid',
                   name=conv_name_base + '2c', kernel_initializer=glorot_uniform(seed=0))(X)
        X = BatchNormalization(axis=3, name=bn_name_base + '2c')(X)

        X = Add()([X, X_shortcut])
        X = Activation('relu')(X)
        return X


    def convolutional_block(X, f, filters, stage, block, s=2):
        """Implementation of the convolutional block as defined in Figure 4

        X -- input tensor of shape (m, n_H_prev, n_W_prev, n_C_prev)
        f -- integer, shape of the middle CONV's window for the main path
        filters -- python list of integers, the number of filters in the CONV layers of the main path
        stage -- integer, used to name the layers, depending on their position in the network
        block -- string/character, used to name the layers, depending on their position in the network
        s -- Integer, specifying the stride to be used
        """
        conv_name_base = 'res' + str(stage) + block + '_branch'
        bn_name_base = 'bn' + str(stage) + block + '_branch'
        F1, F2, F3 = filters
        X_shortcut = X

        X = Conv2D(F1, (1, 1), strides=(s, s), name=conv_name_base + '2a',
                   kernel_initializer=glorot_uniform(seed=0))(X)
        X = BatchNormalization(axis=3, name=bn_name_base + '2a')(X)
        X = Activation('relu')(X)

        X = Conv2D(F2, (f, f), strides=(1, 1), padding='same', name=conv_name_base + '2b',
                   kernel_initializer=glorot_uniform(seed=0))(X)
        X = BatchNormalization(axis=3, name=bn_name_base + '2b')(X)
        X = Activation('relu')(X)

        X = Conv2D(F3, (1, 1), strides=(1, 1), padding='valid', name=conv_name_base + '2c',
                   kernel_initializer=glorot_uniform(seed=0))(X)
        X = BatchNormalization(axis=3, name=bn_name_base + '2c')(X)

        X_shortcut = Conv2D(F3, (1, 1), strides=(s, s), padding='valid', name=conv_name_base + '1',
                            kernel_initializer=glorot_uniform(seed=0))(X_shortcut)
        X_shortcut = BatchNormalization(axis=3, name=bn_name_base + '1')(X_shortcut)

        X = Add()([X, X_shortcut])
        X = Activation('relu')(X)
        return X


    def ResNet50(input_shape=(64, 64, 3), classes=6):
        """The assignment's ResNet50:
        CONV2D -> BATCHNORM -> RELU -> MAXPOOL -> CONVBLOCK -> IDBLOCK*2 -> CONVBLOCK -> IDBLOCK*3
        -> CONVBLOCK -> IDBLOCK*5 -> CONVBLOCK -> IDBLOCK*2 -> AVGPOOL -> TOPLAYER
        """
        X_input = Input(input_shape)
        X = ZeroPadding2D((3, 3))(X_input)

        # Stage 1
        X = Conv2D(64, (7, 7), strides=(2, 2), name='conv1', kernel_initializer=glorot_uniform(seed=0))(X)
        X = BatchNormalization(axis=3, name='bn_conv1')(X)
        X = Activation('relu')(X)
        X = MaxPooling2D((3, 3), strides=(2, 2))(X)

        # Stage 2
        X = convolutional_block(X, f=3, filters=[64, 64, 256], stage=2, block='a', s=1)
        X = identity_block(X, 3, [64, 64, 256], stage=2, block='b')
        X = identity_block(X, 3, [64, 64, 256], stage=2, block='c')

        # Stage 3
        X = convolutional_block(X, f=3, filters=[128, 128, 512], stage=3, block='a', s=2)
        X = identity_block(X, 3, [128, 128, 512], stage=3, block='b')
        X = identity_block(X, 3, [128, 128, 512], stage=3, block='c')
        X = identity_block(X, 3, [128, 128, 512], stage=3, block='d')

        # Stage 4
        X = convolutional_block(X, f=3, filters=[256, 256, 1024], stage=4, block='a', s=2)
        X = identity_block(X, 3, [256, 256, 1024], stage=4, block='b')
        X = identity_block(X, 3, [256, 256, 1024], stage=4, block='c')
        X = identity_block(X, 3, [256, 256, 1024], stage=4, block='d')
        X = identity_block(X, 3, [256, 256, 1024], stage=4, block='e')
        X = identity_block(X, 3, [256, 256, 1024], stage=4, block='f')

        # Stage 5
        X = convolutional_block(X, f=3, filters=[512, 512, 2048], stage=5, block='a', s=2)
        X = identity_block(X, 3, [512, 512, 2048], stage=5, block='b')
        X = identity_block(X, 3, [512, 512, 2048], stage=5, block='c')

        # AVGPOOL
        X = AveragePooling2D((2, 2), name="avg_pool")(X)

        # output layer
        X = Flatten()(X)
        X = Dense(classes, activation='softmax', name='fc' + str(classes),
                  kernel_initializer=glorot_uniform(seed=0))(X)

        model = Model(inputs=X_input, outputs=X, name='ResNet50')
        return model


    def MiniResNet(input_shape=(32, 32, 3), classes=5):
        """A small model from the same blocks (the stem, one convolutional and one identity block)."""
        X_input = Input(input_shape)
        X = ZeroPadding2D((3, 3))(X_input)
        X = Conv2D(8, (7, 7), strides=(2, 2), name='conv1', kernel_initializer=glorot_uniform(seed=0))(X)
        X = BatchNormalization(axis=3, name='bn_conv1')(X)
        X = Activation('relu')(X)
        X = MaxPooling2D((3, 3), strides=(2, 2))(X)
        X = convolutional_block(X, f=3, filters=[4, 4, 16], stage=2, block='a', s=1)
        X = identity_block(X, 3, [4, 4, 16], stage=2, block='b')
        X = AveragePooling2D((2, 2), name='avg_pool')(X)
        X = Flatten()(X)
        X = Dense(classes, activation='softmax', name='fc' + str(classes),
                  kernel_initializer=glorot_uniform(seed=0))(X)
        return Model(inputs=X_input, outputs=X, name='MiniResNet')

    return SimpleNamespace(identity_block=identity_block, convolutional_block=convolutional_block,
                           ResNet50=ResNet50, MiniResNet=MiniResNet)
