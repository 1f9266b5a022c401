"""Orders (`orders.<USER_ID>.place|modify|cancel|get|list|squareoff`) and the portfolio
(`orders.<USER_ID>.funds|positions|holdings|trades`).

Every place carries a `client_order_id` (a fresh UUID unless you give one). A resend after
a lost reply, or after a retryable refusal, sends that same id, and the server keeps one
order per (user, client_order_id), so no retry can place a second order.
"""

from __future__ import annotations

import uuid
from typing import Any, Dict, Iterable, List, Optional, Union

from . import wire
from .client import Requester
from .errors import DecodeError, ErrorCode, PinnacleError
from .models import (
    Funds,
    Holding,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Product,
    Side,
    SquareOff,
    Trade,
)


def new_client_order_id() -> str:
    """A fresh client order id (a UUID: 36 characters of the allowed alphabet)."""
    return str(uuid.uuid4())


def _ref(order_id: Optional[str], client_order_id: Optional[str]) -> Dict[str, Any]:
    if order_id is None and client_order_id is None:
        raise ValueError("name the order by order_id or client_order_id")
    return {"order_id": order_id, "client_order_id": client_order_id}


class Orders:
    """Placing and managing the user's orders (token scopes: `trade`; `read` for get/list)."""

    def __init__(self, requester: Requester, user_id: str) -> None:
        self._r = requester
        self._user_id = user_id

    async def _call(self, verb: str, payload: Dict[str, Any]) -> Any:
        return await self._r.call(wire.order_subject(self._user_id, verb), payload, auth=True)

    async def place(
        self,
        exchange: str,
        symbol: str,
        side: Union[Side, str],
        order_type: Union[OrderType, str],
        quantity: int,
        *,
        price: Optional[int] = None,
        trigger_price: Optional[int] = None,
        product: Union[Product, str, None] = None,
        account: Optional[str] = None,
        client_order_id: Optional[str] = None,
    ) -> Order:
        """Places an order; prices in paise. Returns the order record (a rejection stored
        by the broker comes back as a `PinnacleError`, e.g. `INSUFFICIENT_FUNDS`)."""
        payload = {
            "client_order_id": client_order_id or new_client_order_id(),
            "exchange": exchange,
            "symbol": symbol,
            "side": Side(side).value,
            "order_type": OrderType(order_type).value,
            "quantity": quantity,
            "price": price,
            "trigger_price": trigger_price,
            "product": None if product is None else Product(product).value,
            "account": account,
        }
        return Order.from_wire(await self._call("place", payload))

    async def modify(
        self,
        order_id: Optional[str] = None,
        *,
        client_order_id: Optional[str] = None,
        quantity: Optional[int] = None,
        price: Optional[int] = None,
        trigger_price: Optional[int] = None,
    ) -> Order:
        """Changes a working order (new total quantity, price, trigger; at least one).
        The values are absolute, so a resend after a lost reply asks for the same change."""
        payload = _ref(order_id, client_order_id)
        payload.update(quantity=quantity, price=price, trigger_price=trigger_price)
        return Order.from_wire(await self._call("modify", payload))

    async def cancel(
        self, order_id: Optional[str] = None, *, client_order_id: Optional[str] = None
    ) -> Order:
        """Cancels a working order; returns the record (`CANCELLED`)."""
        try:
            return Order.from_wire(await self._call("cancel", _ref(order_id, client_order_id)))
        except PinnacleError as e:
            # A resend of a cancel whose first reply was lost finds the order already
            # cancelled (INVALID_STATE): that is the first send's success.
            if e.code != ErrorCode.INVALID_STATE or not e.after_lost_reply:
                raise
            order = await self.get(order_id, client_order_id=client_order_id)
            if order.status is not OrderStatus.CANCELLED:
                raise
            return order

    async def get(
        self, order_id: Optional[str] = None, *, client_order_id: Optional[str] = None
    ) -> Order:
        """One of the user's orders, by Pinnacle's id or the client's."""
        return Order.from_wire(await self._call("get", _ref(order_id, client_order_id)))

    async def list(
        self,
        status: Optional[Iterable[Union[OrderStatus, str]]] = None,
        *,
        limit: Optional[int] = None,
    ) -> List[Order]:
        """The user's orders, newest first; only those in `status` if given (`[]` matches
        nothing); `limit` 1-500 (server default 100)."""
        states = None if status is None else [OrderStatus(s).value for s in status]
        result = await self._call("list", {"status": states, "limit": limit})
        return [Order.from_wire(o) for o in _field_list(result, "orders")]

    async def square_off(self, account: Optional[str] = None) -> SquareOff:
        """Squares the account off now: cancels its working INTRADAY orders and closes each
        open INTRADAY position with a marketable LIMIT order (the daily square-off's own,
        so a resend, or the sweep, never closes a position twice)."""
        return SquareOff.from_wire(await self._call("squareoff", {"account": account}))


class Portfolio:
    """The account's funds, positions, holdings and fills (token scope `read`)."""

    def __init__(self, requester: Requester, user_id: str) -> None:
        self._r = requester
        self._user_id = user_id

    async def _call(self, verb: str, account: Optional[str]) -> Any:
        subject = wire.order_subject(self._user_id, verb)
        return await self._r.call(subject, {"account": account}, auth=True)

    async def funds(self, account: Optional[str] = None) -> Funds:
        return Funds.from_wire(await self._call("funds", account))

    async def positions(self, account: Optional[str] = None) -> List[Position]:
        result = await self._call("positions", account)
        return [Position.from_wire(p) for p in _field_list(result, "positions")]

    async def holdings(self, account: Optional[str] = None) -> List[Holding]:
        result = await self._call("holdings", account)
        return [Holding.from_wire(h) for h in _field_list(result, "holdings")]

    async def trades(self, account: Optional[str] = None) -> List[Trade]:
        """One entry per fill, the latest 1,000, oldest first."""
        result = await self._call("trades", account)
        return [Trade.from_wire(t) for t in _field_list(result, "trades")]


def _field_list(result: Any, key: str) -> List[Any]:
    if not isinstance(result, dict) or not isinstance(result.get(key), list):
        raise DecodeError(f"expected a map with a list {key!r}, got {result!r}")
    return list(result[key])
