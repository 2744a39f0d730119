--- parry.nn: neural-network modules.
--
--   local nn = require("parry.nn")       -- or parry.nn
--   local net = nn.Sequential{nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)}
--   local y = net(x)
--
--   local Block = nn.Module:extend("Block")
--   function Block:init(c) self.conv = nn.Conv2d(c, c, 3, {padding = 1}); self.bn = nn.BatchNorm2d(c) end
--   function Block:forward(x) return (self.bn(self.conv(x)) + x):relu() end
--
-- Modules are userdata boxing Swift modules. Fields assigned on a module
-- register by kind: a module becomes a child, a tensor that requires grad a
-- parameter, any other tensor a buffer (saved in state_dict, not trained),
-- anything else a plain Lua field. Lookup order for `m.key`: plain fields,
-- the Lua class (for modules made with `nn.Module:extend`), the built-in
-- methods, then children/parameters/buffers by name (`seq[2]`, `net.fc`).

local core = require("parry.core")
local C = core._nn
local MT = core._module_metatable
local methods = MT.methods
local fields_of, get_entry, set_entry = C._fields, C._get, C._set
local is_tensor, is_module = core.is_tensor, C.is_module

local nn = {}
for name, fn in pairs(C) do
  if name:sub(1, 1) ~= "_" then nn[name] = fn end
end
nn.functional = core._functional

MT.__index = function(self, key)
  local fields = fields_of(self)
  local v = fields[key]
  if v ~= nil then return v end
  local class = rawget(fields, "__class")
  if class ~= nil then
    v = class[key]
    if v ~= nil then return v end
  end
  v = methods[key]
  if v ~= nil then return v end
  if type(key) == "string" or math.type(key) == "integer" then return get_entry(self, key) end
  return nil
end

MT.__newindex = function(self, key, value)
  local fields = fields_of(self)
  if is_tensor(value) or is_module(value) then
    fields[key] = nil
    set_entry(self, key, value)
  else
    if value == nil and (type(key) == "string" or math.type(key) == "integer") then set_entry(self, key, nil) end
    fields[key] = value
  end
end

local H = core._hooks
local has_hooks = H.has_hooks

MT.__call = function(self, ...)
  if rawget(fields_of(self), "__class") == nil then return self:forward(...) end
  -- A Lua-defined module with hooks runs through Swift's call, which fires them
  -- around its Lua forward.
  if select("#", ...) == 1 and has_hooks(self) then return methods.forward(self, ...) end
  local y = self:forward(...)
  -- Built-in forwards fire feature hooks in Swift; Lua-defined ones do it here.
  methods._hook(self, y)
  return y
end

-- MARK: hooks (PyTorch's semantics; the functions are kept here by id, Swift calls them back)

local raise = require("parry._util").raise
local hook_fns = {}
H.set_dispatcher(function(id, ...)
  local f = hook_fns[id]
  if f == nil then return nil end
  return f(...)
end)

local Handle = { __name = "parry.HookHandle" }
Handle.__index = Handle
--- handle:remove(): unregisters the hook (calling it again does nothing).
function Handle:remove()
  if self.id ~= nil then
    hook_fns[self.id] = nil
    H.remove(self.id)
    self.id = nil
  end
end

local function callable(f)
  if type(f) == "function" then return true end
  local mt = getmetatable(f)
  return type(mt) == "table" and mt.__call ~= nil
end

local function hook(name, register)
  return function(self, fn)
    if not callable(fn) then raise(name .. ": expected a function (argument 1), got " .. type(fn)) end
    local id = register(self)
    for _, dead in ipairs(H.dead()) do hook_fns[dead] = nil end
    hook_fns[id] = fn
    return setmetatable({ id = id }, Handle)
  end
end

--- t:register_hook(fn): fn(grad) runs when t's gradient is computed; a returned tensor replaces it.
core.Tensor.register_hook = hook("Tensor:register_hook", H.tensor)
--- m:register_forward_pre_hook(fn): fn(module, input) before forward; a returned tensor replaces the input.
methods.register_forward_pre_hook = hook("Module:register_forward_pre_hook", H.forward_pre)
--- m:register_forward_hook(fn): fn(module, input, output) after forward; a returned tensor replaces the output.
methods.register_forward_hook = hook("Module:register_forward_hook", H.forward)
--- m:register_full_backward_hook(fn): fn(module, grad_input, grad_output) in backward; a returned tensor replaces grad_input.
methods.register_full_backward_hook = hook("Module:register_full_backward_hook", H.backward)

-- Swift containers call Lua-defined children through this.
C._set_forward_helper(function(self, x) return self:forward(x) end)

-- Maps each dotted name's numeric components with f (PyTorch's Sequential
-- indices are 0-based, parry's 1-based).
local function map_indices(sd, f)
  if type(sd) ~= "table" then require("parry._util").raise("expected a table of name = tensor") end
  local out = {}
  for name, t in pairs(sd) do
    local parts = {}
    for part in tostring(name):gmatch("[^.]+") do
      parts[#parts + 1] = part:match("^%d+$") and tostring(f(tonumber(part))) or part
    end
    out[table.concat(parts, ".")] = t
  end
  return out
end

--- nn.from_torch_names(sd): PyTorch state-dict names ("0.weight",
-- "layer1.0.conv1.weight") to parry's ("1.weight", "layer1.1.conv1.weight").
function nn.from_torch_names(sd) return map_indices(sd, function(i) return i + 1 end) end

--- nn.to_torch_names(sd): the inverse, for files PyTorch will load.
function nn.to_torch_names(sd) return map_indices(sd, function(i) return i - 1 end) end

-- Plain Lua values copied for a clone: tables without a metatable deeply
-- (cycles kept), everything else (functions, classes, userdata) shared.
local function copy_plain(v, seen)
  if type(v) ~= "table" or getmetatable(v) ~= nil then return v end
  if seen[v] then return seen[v] end
  local out = {}
  seen[v] = out
  for k, x in pairs(v) do out[copy_plain(k, seen)] = copy_plain(x, seen) end
  return out
end

--- Module:clone() -> a deep copy (PyTorch's copy.deepcopy of a module):
-- parameters and buffers copied, the same structure, settings and modes;
-- Lua-defined modules keep their class, and their plain fields are copied.
function methods.clone(self)
  if not is_module(self) then require("parry._util").raise("Module:clone: expected a module (argument 1), got " .. type(self)) end
  local ok, copy = pcall(methods._clone, self)
  if not ok then require("parry._util").raise((tostring(copy):gsub("^.-Module:_clone: ", "Module:clone: "))) end
  local olds, news = self:named_modules(), copy:named_modules()
  local seen = {}
  for i = 1, #olds do
    local src, dst = fields_of(olds[i][2]), fields_of(news[i][2])
    for k, v in pairs(src) do
      if k == "__children" then
        local kids = {}
        for name in pairs(v) do kids[name] = get_entry(news[i][2], name) end
        dst.__children = kids
      elseif k == "__class" then
        dst.__class = v
      else
        dst[k] = copy_plain(v, seen)
      end
    end
  end
  return copy
end

--- Base class of Lua-defined modules.
local Module = { __name = "Module" }
nn.Module = Module

--- Module:extend(name) -> a new class; call it to make instances. `init`
-- receives the constructor's arguments; `forward` defines the computation.
function Module:extend(name)
  assert(type(name) == "string", "nn.Module:extend: expected a class name (string)")
  local class = { __name = name, __parent = self }
  return setmetatable(class, {
    __index = self,
    __call = function(c, ...) return c:new(...) end,
    __tostring = function() return "class " .. name end,
  })
end

function Module:new(...)
  local obj = C._new_lua_module(self.__name)
  fields_of(obj).__class = self
  local init = self.init
  if init then init(obj, ...) end
  return obj
end

function Module:forward()
  require("parry._util").raise(self.__name .. ":forward is not implemented")
end

return nn
