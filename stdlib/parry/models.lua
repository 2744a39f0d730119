--- parry.models: the model zoo.
--
--   parry.models.mlp{784, 256, 10}
--   parry.models.small_cnn{in_channels = 1, classes = 10}
--   parry.models.resnet20{in_channels = 3, classes = 10}   -- CIFAR-style, 0.27M parameters
--   parry.models.resnet18{classes = 100}
-- Features of a named layer: `local f, logits = net:features(x, "layer2")`.
local core = require("parry.core")
local models = {}
for name, fn in pairs(core._models) do models[name] = fn end
return models
