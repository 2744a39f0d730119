-- bind_pretrain.lua — trains the small three-modality "Bind" model that
-- examples/calibration.lua attacks and calibrates, ImageBind's recipe at toy
-- scale, and saves it to out/bind.safetensors:
--   1. CLIP-style pretraining of the image encoder against 10 learnable class
--      centers ("text" embeddings): cross-entropy on cos(z, t_c)/τ, τ = 0.07;
--   2. the centers and the image encoder frozen; the point-cloud and signal
--      encoders bound to the image embedding with symmetric InfoNCE (τ 0.07).
--
--   parry examples/bind_pretrain.lua [train_images=20000] [epochs=4]
--
-- Seeded. Measured on 2 cores (release build, 2026-12-02): 93 s in total
-- (image encoder and centers 23 s, point encoder 40 s, signal encoder 24 s).
-- Zero-shot test accuracy (2,000 test images, cosine to the frozen centers):
--   image 0.9015   point cloud 0.6995   signal 0.7855
-- (the image encoder after 4 epochs; the bound encoders reach the centers only
-- through InfoNCE to the image embeddings, never seeing a label).
local parry = require("parry")
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local bind = dofile(here .. "bind_model.lua")
local nn, F = parry.nn, parry.nn.functional

local n_train = tonumber(arg[1]) or 20000
local epochs = tonumber(arg[2]) or 4
local TAU = 0.07
local t0 = parry.clock()
parry.manual_seed(0)

local train = parry.data.fashion_mnist{split = "train", limit = n_train}
local test = parry.data.fashion_mnist{split = "test", limit = 2000}
local xs = bind.inputs(train.x, 1)
local ts = bind.inputs(test.x, 2)
local encoders = bind.encoders()

-- Zero-shot accuracy of one modality against the centers.
local function zero_shot(m, centers)
  return parry.robust.zero_shot(encoders[m], centers, ts[m], test.y).clean
end

-- 1. image encoder and centers
local centers = parry.randn(10, bind.DIM):requires_grad_()
local params = encoders.image:parameters()
params[#params + 1] = centers
local opt = parry.optim.Adam(params, {lr = 1e-3})
local t = parry.clock()
for epoch = 1, epochs do
  encoders.image:train()
  local total, n = 0, 0
  for idx in parry.data.TensorDataset(parry.arange(1, n_train):long(), train.y):batches(128, {shuffle = true}) do
    local i = idx   -- batches of indices, so every modality sees the same images
    local yb = train.y:index_select(1, i)
    local logits = F.cosine_logits(encoders.image(xs.image:index_select(1, i)), centers, {temperature = TAU})
    local loss = parry.losses.cross_entropy(logits, yb)
    opt:zero_grad(); loss:backward(); opt:step()
    total, n = total + loss:item(), n + 1
  end
  print(string.format("image epoch %d: loss %.4f, zero-shot test accuracy %.4f", epoch, total / n, zero_shot("image", centers:detach())))
end
print(string.format("image encoder and centers: %.0f s", parry.clock() - t))
centers = centers:detach()
encoders.image:freeze()

-- 2. bind the other modalities to the frozen image embeddings
local image_emb = parry.no_grad(function()
  local parts = {}
  for start = 1, n_train, 500 do parts[#parts + 1] = encoders.image(xs.image:narrow(1, start, math.min(500, n_train - start + 1))) end
  return parry.cat(parts, 1)
end)
for _, m in ipairs{"point", "signal"} do
  t = parry.clock()
  local o = parry.optim.Adam(encoders[m]:parameters(), {lr = 1e-3})
  for epoch = 1, epochs do
    encoders[m]:train()
    local total, n = 0, 0
    for idx in parry.data.TensorDataset(parry.arange(1, n_train):long(), train.y):batches(128, {shuffle = true}) do
      local z = encoders[m](xs[m]:index_select(1, idx))
      local loss = parry.losses.infonce(z, image_emb:index_select(1, idx), {temperature = TAU, symmetric = true})
      o:zero_grad(); loss:backward(); o:step()
      total, n = total + loss:item(), n + 1
    end
    print(string.format("%s epoch %d: InfoNCE %.4f, zero-shot test accuracy %.4f", m, epoch, total / n, zero_shot(m, centers)))
  end
  print(string.format("%s encoder bound: %.0f s", m, parry.clock() - t))
  encoders[m]:freeze()
end

os.execute("mkdir -p out")
bind.save("out/bind.safetensors", encoders, centers)
print(string.format("\nzero-shot test accuracy (%d images): image %.4f, point %.4f, signal %.4f",
  test.x:size(1), zero_shot("image", centers), zero_shot("point", centers), zero_shot("signal", centers)))
print(string.format("wrote out/bind.safetensors; %.0f s in total", parry.clock() - t0))
