"""Products: /v1/products. Products may carry caller-chosen ids (usagebill's sync does)."""

from __future__ import annotations

import re

from ..errors import invalid
from ..routing import Request, list_response, router
from ..store import Store
from ._common import created_filter, merge_metadata, new_metadata, require

_PLAIN = ("name", "active", "description", "images", "marketing_features", "package_dimensions", "shippable",
          "statement_descriptor", "tax_code", "unit_label", "url")
_ID = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")


def _apply(product: dict, params: dict) -> None:
    for name in _PLAIN:
        if name in params:
            value = params[name]
            if name in ("images", "marketing_features"):
                value = value or []
            elif value == "":
                if name == "name":
                    raise invalid("You passed an empty string for 'name'.", param="name")
                value = None
            product[name] = value


def build_product(req: Request, params: dict) -> dict:
    """A new product from ProductCreateParams-shaped ``params`` (also used by prices' product_data)."""
    if "default_price_data" in params:
        raise invalid("The usagebill sandbox does not support the parameter 'default_price_data'.",
                      param="default_price_data")
    if "tax_details" in params:
        raise invalid("The usagebill sandbox does not support the parameter 'tax_details'.", param="tax_details")
    id = params.get("id") or Store.new_id("prod", 14)
    if not _ID.match(id):
        raise invalid("Invalid product id: it may only contain letters, digits, '-' and '_'.", param="id")
    product = {
        "id": id,
        "object": "product",
        "active": True,
        "created": req.now,
        "default_price": None,
        "description": None,
        "images": [],
        "livemode": False,
        "marketing_features": [],
        "metadata": new_metadata(params.get("metadata")),
        "name": params["name"],
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "tax_details": None,
        "type": params.get("type", "service"),
        "unit_label": None,
        "updated": req.now,
        "url": None,
    }
    _apply(product, params)
    return req.store.insert(product)


@router.route("POST", "/v1/products", params="ProductCreateParams")
def create_product(req: Request) -> dict:
    return build_product(req, req.params)


@router.route("GET", "/v1/products/{id}", params="ProductRetrieveParams")
def retrieve_product(req: Request, id: str) -> dict:
    return require(req, "product", id)


@router.route("POST", "/v1/products/{id}", params="ProductUpdateParams")
def update_product(req: Request, id: str) -> dict:
    product = require(req, "product", id)
    p = req.params
    if "tax_details" in p:
        raise invalid("The usagebill sandbox does not support the parameter 'tax_details'.", param="tax_details")
    _apply(product, p)
    if "metadata" in p:
        product["metadata"] = merge_metadata(product["metadata"], p["metadata"])
    if "default_price" in p:
        price_id = p["default_price"]
        if price_id:
            price = req.store.get("price", price_id)
            if price is None or price["product"] != id:
                raise invalid(f"No such price: '{price_id}' on product {id}", param="default_price")
        product["default_price"] = price_id or None
    product["updated"] = req.now
    return req.store.put(product)


@router.route("GET", "/v1/products", params="ProductListParams")
def list_products(req: Request) -> dict:
    p = req.params
    products = req.store.all("product")
    for name in ("active", "shippable", "type", "url"):
        if name in p:
            products = [o for o in products if o.get(name) == p[name]]
    if "ids" in p:
        wanted = set(p["ids"])
        products = [o for o in products if o["id"] in wanted]
    products = created_filter(products, p.get("created"))
    return list_response(req, products, "/v1/products")
