#include "engine/json_schema.h"

#include <algorithm>
#include <cmath>
#include <set>

namespace dsv3 {

using ojson = nlohmann::ordered_json;

void LiteralTrie::insert(std::string_view s, int32_t index) {
  int32_t n = 0;
  nodes[0].below.push_back(index);
  for (unsigned char b : s) {
    int32_t c = child(n, b);
    if (c < 0) {
      c = int32_t(nodes.size());
      auto& next = nodes[size_t(n)].next;
      next.insert(std::lower_bound(next.begin(), next.end(), std::pair<uint8_t, int32_t>(b, -1)), {b, c});
      nodes.emplace_back();
    }
    n = c;
    nodes[size_t(n)].below.push_back(index);
  }
  nodes[size_t(n)].terminal = index;
  for (auto& node : nodes) std::sort(node.below.begin(), node.below.end());
}

int32_t LiteralTrie::child(int32_t node, uint8_t b) const {
  for (const auto& [byte, c] : nodes[size_t(node)].next)
    if (byte == b) return c;
  return -1;
}

bool LiteralTrie::has_below(int32_t node, int32_t lo, int32_t hi) const {
  const auto& v = nodes[size_t(node)].below;
  auto it = std::lower_bound(v.begin(), v.end(), lo);
  return it != v.end() && *it <= hi;
}

namespace {

using Kind = JsonNode::Kind;

class Compiler {
 public:
  JsonGrammar g;

  int32_t add(JsonNode n) {
    g.nodes.push_back(std::move(n));
    return int32_t(g.nodes.size() - 1);
  }

  int32_t plain_string() {
    JsonNode n;
    n.kind = Kind::String;
    return add(std::move(n));
  }

  // The "any JSON value" node (created once; its object and array refer back to it).
  int32_t any() {
    if (any_ >= 0) return any_;
    any_ = add(JsonNode{});  // AnyOf, alternatives filled below
    JsonNode obj;
    obj.kind = Kind::Object;
    obj.free_keys = true;
    obj.additional = any_;
    JsonNode arr;
    arr.kind = Kind::Array;
    arr.items = any_;
    JsonNode str;
    str.kind = Kind::String;
    JsonNode num;
    num.kind = Kind::Number;
    JsonNode lit;
    lit.kind = Kind::Literal;
    lit.literals.insert("true", 0);
    lit.literals.insert("false", 1);
    lit.literals.insert("null", 2);
    std::vector<int32_t> alts = {add(std::move(obj)), add(std::move(arr)), add(std::move(str)), add(std::move(num)),
                                 add(std::move(lit))};
    g.nodes[size_t(any_)].alternatives = std::move(alts);
    return any_;
  }

  int32_t schema(const ojson& s, const std::string& path) {
    if (s.is_boolean()) {
      if (s.get<bool>()) return any();
      throw SchemaError("false", path, str_cat("The schema at '", path_or_root(path), "' is false: nothing matches it."));
    }
    if (!s.is_object())
      throw SchemaError("type", path, str_cat("The schema at '", path_or_root(path), "' must be an object, got ",
                                              s.type_name(), "."));
    static const std::set<std::string> annotations = {"title",    "description", "default",    "examples", "$schema",
                                                      "$id",      "$comment",    "deprecated", "readOnly", "writeOnly"};
    static const std::set<std::string> known = {"type",      "enum",      "const",     "properties",
                                                "required",  "additionalProperties",   "items",
                                                "minItems",  "maxItems",  "minLength", "maxLength",
                                                "minimum",   "maximum",   "anyOf"};
    for (const auto& [k, v] : s.items())
      if (!annotations.count(k) && !known.count(k))
        throw SchemaError(k, path + "/" + k,
                          str_cat("Unsupported JSON-schema keyword '", k, "' at '", path_or_root(path),
                                  "'. Supported: type, enum, const, properties, required, additionalProperties, items, "
                                  "minItems, maxItems, minLength, maxLength, minimum, maximum (integers), anyOf."));

    if (s.contains("enum") || s.contains("const")) return literal(s, path);
    if (s.contains("anyOf")) {
      for (const char* k : {"type", "properties", "items"})
        if (s.contains(k))
          throw SchemaError("anyOf", path + "/anyOf",
                            str_cat("'anyOf' at '", path_or_root(path), "' must stand alone (found '", k,
                                    "' beside it); move the keyword into each alternative."));
      const ojson& alts = s["anyOf"];
      if (!alts.is_array() || alts.empty())
        throw SchemaError("anyOf", path + "/anyOf", str_cat("'anyOf' at '", path_or_root(path), "' must be a non-empty array."));
      JsonNode n;
      for (size_t i = 0; i < alts.size(); ++i) n.alternatives.push_back(schema(alts[i], str_cat(path, "/anyOf/", i)));
      return add(std::move(n));
    }
    if (!s.contains("type")) {
      if (s.contains("properties") || s.contains("additionalProperties")) return typed(s, "object", path);
      if (s.contains("items")) return typed(s, "array", path);
      for (const auto& [k, v] : s.items())
        if (!annotations.count(k))
          throw SchemaError(k, path + "/" + k,
                            str_cat("'", k, "' at '", path_or_root(path), "' needs a 'type' beside it."));
      return any();
    }
    const ojson& t = s["type"];
    if (t.is_string()) return typed(s, t.get<std::string>(), path);
    if (!t.is_array() || t.empty())
      throw SchemaError("type", path + "/type", str_cat("'type' at '", path_or_root(path), "' must be a string or a non-empty array of strings."));
    JsonNode n;
    for (const ojson& x : t) {
      if (!x.is_string())
        throw SchemaError("type", path + "/type", str_cat("'type' at '", path_or_root(path), "' must list type names."));
      n.alternatives.push_back(typed(s, x.get<std::string>(), path));
    }
    return n.alternatives.size() == 1 ? n.alternatives[0] : add(std::move(n));
  }

 private:
  int32_t any_ = -1;

  static std::string path_or_root(const std::string& p) { return p.empty() ? "/" : p; }

  int64_t count(const ojson& s, const char* key, const std::string& path) {
    const ojson& v = s[key];
    if (!v.is_number_integer() || v.get<int64_t>() < 0)
      throw SchemaError(key, path + "/" + key,
                        str_cat("'", key, "' at '", path_or_root(path), "' must be a non-negative integer."));
    return v.get<int64_t>();
  }

  // Keywords that belong to other types must not appear (they would be silently ignored).
  void only(const ojson& s, const std::string& type, std::initializer_list<const char*> allowed, const std::string& path) {
    static const char* specific[] = {"properties", "required", "additionalProperties", "items", "minItems", "maxItems",
                                     "minLength",  "maxLength", "minimum",             "maximum"};
    for (const char* k : specific) {
      if (!s.contains(k)) continue;
      if (std::find_if(allowed.begin(), allowed.end(), [&](const char* a) { return std::string_view(a) == k; }) !=
          allowed.end())
        continue;
      throw SchemaError(k, path + "/" + k,
                        str_cat("'", k, "' at '", path_or_root(path), "' is not supported for type '", type,
                                k == std::string_view("minimum") || k == std::string_view("maximum")
                                    ? "' (bounds are enforced on integers only)."
                                    : "'."));
    }
  }

  int32_t typed(const ojson& s, const std::string& type, const std::string& path) {
    JsonNode n;
    if (type == "object") {
      only(s, type, {"properties", "required", "additionalProperties"}, path);
      n.kind = Kind::Object;
      std::set<std::string> required;
      if (s.contains("required")) {
        if (!s["required"].is_array())
          throw SchemaError("required", path + "/required", str_cat("'required' at '", path_or_root(path), "' must be an array of names."));
        for (const ojson& r : s["required"]) {
          if (!r.is_string())
            throw SchemaError("required", path + "/required", str_cat("'required' at '", path_or_root(path), "' must be an array of names."));
          required.insert(r.get<std::string>());
        }
      }
      const ojson* ap = s.contains("additionalProperties") ? &s["additionalProperties"] : nullptr;
      if (ap && !ap->is_boolean() && !ap->is_object())
        throw SchemaError("additionalProperties", path + "/additionalProperties",
                          str_cat("'additionalProperties' at '", path_or_root(path), "' must be a boolean or a schema."));
      if (s.contains("properties")) {
        const ojson& props = s["properties"];
        if (!props.is_object())
          throw SchemaError("properties", path + "/properties", str_cat("'properties' at '", path_or_root(path), "' must be an object."));
        if (ap && !(ap->is_boolean() && !ap->get<bool>()))
          throw SchemaError("additionalProperties", path + "/additionalProperties",
                            str_cat("'additionalProperties' at '", path_or_root(path),
                                    "' must be false when 'properties' is given (only the declared properties are "
                                    "generated)."));
        for (const auto& [name, sub] : props.items()) {
          JsonNode::Property p;
          p.name = name;
          p.required = required.erase(name) > 0;
          p.node = schema(sub, path + "/properties/" + name);
          n.properties.push_back(std::move(p));
        }
        if (!required.empty())
          throw SchemaError("required", path + "/required",
                            str_cat("'required' at '", path_or_root(path), "' names '", *required.begin(),
                                    "', which is not in 'properties'."));
        for (size_t i = 0; i < n.properties.size(); ++i) {
          // The key as it appears after the opening quote: JSON-escaped, closing quote included.
          const std::string quoted = ojson(n.properties[i].name).dump();
          n.keys.insert(std::string_view(quoted).substr(1), int32_t(i));
        }
      } else {
        if (!required.empty())
          throw SchemaError("required", path + "/required",
                            str_cat("'required' at '", path_or_root(path), "' needs 'properties'."));
        const bool none = ap && ap->is_boolean() && !ap->get<bool>();
        n.free_keys = !none;
        if (!none) n.additional = ap && ap->is_object() ? schema(*ap, path + "/additionalProperties") : any();
      }
    } else if (type == "array") {
      only(s, type, {"items", "minItems", "maxItems"}, path);
      n.kind = Kind::Array;
      n.items = s.contains("items") ? schema(s["items"], path + "/items") : any();
      if (s.contains("minItems")) n.min_items = count(s, "minItems", path);
      if (s.contains("maxItems")) n.max_items = count(s, "maxItems", path);
      if (n.min_items > n.max_items)
        throw SchemaError("minItems", path + "/minItems", str_cat("'minItems' at '", path_or_root(path), "' exceeds 'maxItems'."));
    } else if (type == "string") {
      only(s, type, {"minLength", "maxLength"}, path);
      n.kind = Kind::String;
      if (s.contains("minLength")) n.min_length = count(s, "minLength", path);
      if (s.contains("maxLength")) n.max_length = count(s, "maxLength", path);
      if (n.min_length > n.max_length)
        throw SchemaError("minLength", path + "/minLength", str_cat("'minLength' at '", path_or_root(path), "' exceeds 'maxLength'."));
    } else if (type == "number") {
      only(s, type, {}, path);
      n.kind = Kind::Number;
    } else if (type == "integer") {
      only(s, type, {"minimum", "maximum"}, path);
      n.kind = Kind::Integer;
      for (const char* k : {"minimum", "maximum"}) {
        if (!s.contains(k)) continue;
        const ojson& v = s[k];
        if (!v.is_number())
          throw SchemaError(k, path + "/" + k, str_cat("'", k, "' at '", path_or_root(path), "' must be a number."));
        // Bounds within the automaton's 16-digit integers; a fractional bound rounds inwards.
        const double lim = 9999999999999999.0;
        double x = std::clamp(v.get<double>(), -lim, lim);
        if (k == std::string_view("minimum")) n.minimum = int64_t(std::ceil(x));
        else n.maximum = int64_t(std::floor(x));
      }
      if (n.minimum > n.maximum)
        throw SchemaError("minimum", path + "/minimum", str_cat("'minimum' at '", path_or_root(path), "' exceeds 'maximum'."));
    } else if (type == "boolean" || type == "null") {
      only(s, type, {}, path);
      n.kind = Kind::Literal;
      if (type == "boolean") {
        n.literals.insert("true", 0);
        n.literals.insert("false", 1);
      } else {
        n.literals.insert("null", 0);
      }
    } else {
      throw SchemaError("type", path + "/type",
                        str_cat("Unknown type '", type, "' at '", path_or_root(path),
                                "' (object, array, string, number, integer, boolean or null)."));
    }
    return add(std::move(n));
  }

  int32_t literal(const ojson& s, const std::string& path) {
    JsonNode n;
    n.kind = Kind::Literal;
    std::vector<ojson> values;
    if (s.contains("const")) values.push_back(s["const"]);
    if (s.contains("enum")) {
      if (!s["enum"].is_array() || s["enum"].empty())
        throw SchemaError("enum", path + "/enum", str_cat("'enum' at '", path_or_root(path), "' must be a non-empty array."));
      if (s.contains("const"))
        throw SchemaError("const", path + "/const", str_cat("'enum' and 'const' together at '", path_or_root(path), "'."));
      for (const ojson& v : s["enum"]) values.push_back(v);
    }
    int32_t i = 0;
    for (const ojson& v : values) {
      // The canonical serialisation (no whitespace, UTF-8 kept, declared key order) is the one
      // spelling generated; a type beside enum is checked against the values.
      if (v.is_number_float() && !std::isfinite(v.get<double>()))
        throw SchemaError("enum", path, "Non-finite numbers are not JSON.");
      n.literals.insert(v.dump(), i++);
    }
    if (s.contains("type")) {
      std::set<std::string> types;
      const ojson& t = s["type"];
      if (t.is_string()) types.insert(t.get<std::string>());
      else if (t.is_array())
        for (const ojson& x : t)
          if (x.is_string()) types.insert(x.get<std::string>());
      for (const ojson& v : values) {
        const std::string vt = v.is_number_integer() ? "integer" : v.is_number() ? "number" : v.is_boolean() ? "boolean"
                             : v.is_string() ? "string" : v.is_null() ? "null" : v.is_array() ? "array" : "object";
        if (!types.count(vt) && !(vt == "integer" && types.count("number")))
          throw SchemaError(s.contains("enum") ? "enum" : "const", path,
                            str_cat("The value ", v.dump(), " at '", path_or_root(path), "' is not of the schema's type."));
      }
    }
    return add(std::move(n));
  }
};

}  // namespace

struct JsonGrammarBuilder::Impl : Compiler {};

JsonGrammarBuilder::JsonGrammarBuilder() : impl_(std::make_shared<Impl>()) { impl_->g.key_string = impl_->plain_string(); }

int32_t JsonGrammarBuilder::schema(const nlohmann::ordered_json& schema, const std::string& path) {
  return impl_->schema(schema, path);
}

int32_t JsonGrammarBuilder::free_object() {
  return impl_->g.nodes[size_t(impl_->any())].alternatives[0];  // the any node's object
}

int32_t JsonGrammarBuilder::literal(const std::vector<std::string>& alternatives) {
  JsonNode n;
  n.kind = Kind::Literal;
  for (size_t i = 0; i < alternatives.size(); ++i) n.literals.insert(alternatives[i], int32_t(i));
  return impl_->add(std::move(n));
}

int32_t JsonGrammarBuilder::sequence(std::vector<int32_t> items) {
  DSV3_ASSERT(!items.empty() && items.size() <= 255);  // JsonFrame::phase counts them
  JsonNode n;
  n.kind = Kind::Sequence;
  n.sequence = std::move(items);
  return impl_->add(std::move(n));
}

int32_t JsonGrammarBuilder::any_of(std::vector<int32_t> alternatives) {
  JsonNode n;
  n.alternatives = std::move(alternatives);
  return impl_->add(std::move(n));
}

void JsonGrammarBuilder::set_alternatives(int32_t node, std::vector<int32_t> alternatives) {
  JsonNode& n = impl_->g.nodes[size_t(node)];
  DSV3_ASSERT(n.kind == Kind::AnyOf);
  n.alternatives = std::move(alternatives);
}

JsonGrammar JsonGrammarBuilder::finish(int32_t root) && {
  impl_->g.root = root;
  return std::move(impl_->g);
}

JsonGrammar compile_json_schema(const nlohmann::ordered_json& schema) {
  JsonGrammarBuilder b;
  const int32_t root = b.schema(schema);
  return std::move(b).finish(root);
}

JsonGrammar json_object_grammar() {
  JsonGrammarBuilder b;
  const int32_t root = b.free_object();
  return std::move(b).finish(root);
}

}  // namespace dsv3
